//! A small bank-account domain written by hand (no derive macros), shared by the foundation
//! tests: three event types, one of them with an older schema version.
#![allow(dead_code)] // Each test file uses its own part of the domain.

use std::fmt;

use es_core::{Aggregate, CodecError, CodecId, DecodeError, Event, EventSet};
use serde::{Deserialize, Serialize};

/// An account was opened.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    pub owner: String,
}

/// Money was deposited (schema version 2: version 1 had no reference and a 32-bit amount).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Deposited {
    pub amount: u64,
    pub reference: String,
}

/// Schema version 1 of [`Deposited`], still found in old streams.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DepositedV1 {
    pub amount: u32,
}

impl From<DepositedV1> for Deposited {
    fn from(old: DepositedV1) -> Self {
        Deposited {
            amount: u64::from(old.amount),
            reference: String::new(),
        }
    }
}

/// Money was withdrawn.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Withdrawn {
    pub amount: u64,
}

fn payload_error<E: Event>(schema_version: u32, source: CodecError) -> DecodeError {
    DecodeError::Payload {
        event_type: E::NAME.into(),
        schema_version,
        source,
    }
}

fn unknown_version<E: Event>(schema_version: u32) -> DecodeError {
    DecodeError::UnknownSchemaVersion {
        event_type: E::NAME.into(),
        schema_version,
        current: E::SCHEMA_VERSION,
    }
}

impl Event for Opened {
    const NAME: &'static str = "AccountOpened";
    const SCHEMA_VERSION: u32 = 1;

    fn decode_versioned(
        schema_version: u32,
        codec: CodecId,
        payload: &[u8],
    ) -> Result<Self, DecodeError> {
        match schema_version {
            1 => codec
                .decode(payload)
                .map_err(|e| payload_error::<Self>(1, e)),
            other => Err(unknown_version::<Self>(other)),
        }
    }
}

impl Event for Deposited {
    const NAME: &'static str = "MoneyDeposited";
    const SCHEMA_VERSION: u32 = 2;

    fn decode_versioned(
        schema_version: u32,
        codec: CodecId,
        payload: &[u8],
    ) -> Result<Self, DecodeError> {
        match schema_version {
            2 => codec
                .decode(payload)
                .map_err(|e| payload_error::<Self>(2, e)),
            1 => codec
                .decode::<DepositedV1>(payload)
                .map(Deposited::from)
                .map_err(|e| payload_error::<Self>(1, e)),
            other => Err(unknown_version::<Self>(other)),
        }
    }
}

impl Event for Withdrawn {
    const NAME: &'static str = "MoneyWithdrawn";
    const SCHEMA_VERSION: u32 = 1;

    fn decode_versioned(
        schema_version: u32,
        codec: CodecId,
        payload: &[u8],
    ) -> Result<Self, DecodeError> {
        match schema_version {
            1 => codec
                .decode(payload)
                .map_err(|e| payload_error::<Self>(1, e)),
            other => Err(unknown_version::<Self>(other)),
        }
    }
}

/// The events of an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountEvent {
    Opened(Opened),
    Deposited(Deposited),
    Withdrawn(Withdrawn),
}

impl From<Opened> for AccountEvent {
    fn from(event: Opened) -> Self {
        AccountEvent::Opened(event)
    }
}

impl From<Deposited> for AccountEvent {
    fn from(event: Deposited) -> Self {
        AccountEvent::Deposited(event)
    }
}

impl From<Withdrawn> for AccountEvent {
    fn from(event: Withdrawn) -> Self {
        AccountEvent::Withdrawn(event)
    }
}

impl EventSet for AccountEvent {
    const EVENT_TYPES: &'static [&'static str] = &[Opened::NAME, Deposited::NAME, Withdrawn::NAME];

    fn event_type(&self) -> &'static str {
        match self {
            AccountEvent::Opened(_) => Opened::NAME,
            AccountEvent::Deposited(_) => Deposited::NAME,
            AccountEvent::Withdrawn(_) => Withdrawn::NAME,
        }
    }

    fn schema_version(&self) -> u32 {
        match self {
            AccountEvent::Opened(_) => Opened::SCHEMA_VERSION,
            AccountEvent::Deposited(_) => Deposited::SCHEMA_VERSION,
            AccountEvent::Withdrawn(_) => Withdrawn::SCHEMA_VERSION,
        }
    }

    fn encode(&self, codec: CodecId) -> Result<Vec<u8>, CodecError> {
        match self {
            AccountEvent::Opened(event) => codec.encode(event),
            AccountEvent::Deposited(event) => codec.encode(event),
            AccountEvent::Withdrawn(event) => codec.encode(event),
        }
    }

    fn decode(
        event_type: &str,
        schema_version: u32,
        codec: CodecId,
        payload: &[u8],
    ) -> Result<Self, DecodeError> {
        match event_type {
            Opened::NAME => {
                Opened::decode_versioned(schema_version, codec, payload).map(Into::into)
            }
            Deposited::NAME => {
                Deposited::decode_versioned(schema_version, codec, payload).map(Into::into)
            }
            Withdrawn::NAME => {
                Withdrawn::decode_versioned(schema_version, codec, payload).map(Into::into)
            }
            other => Err(DecodeError::UnknownEventType {
                event_type: other.into(),
            }),
        }
    }
}

/// A bank account: an owner, a balance, and a few counters that make states easy to tell
/// apart.
#[derive(Default, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub owner: Option<String>,
    pub balance: u64,
    pub deposits: u32,
    pub withdrawals: u32,
    pub references: Vec<String>,
}

impl Aggregate for Account {
    type Event = AccountEvent;
    const TYPE: &'static str = "account";
    const SNAPSHOT_EVERY: Option<u64> = Some(SNAPSHOT_EVERY);
    const SCHEMA_FINGERPRINT: u64 = 0x5eed_0000_acc0_0001;

    fn apply_event(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened(opened) => self.owner = Some(opened.owner.clone()),
            AccountEvent::Deposited(deposited) => {
                self.balance += deposited.amount;
                self.deposits += 1;
                if !deposited.reference.is_empty() {
                    self.references.push(deposited.reference.clone());
                }
            }
            AccountEvent::Withdrawn(withdrawn) => {
                // Applying never fails: the command checked the balance.
                self.balance = self.balance.saturating_sub(withdrawn.amount);
                self.withdrawals += 1;
            }
        }
    }
}

/// The account takes a snapshot every this many events.
pub const SNAPSHOT_EVERY: u64 = 5;

/// Why an account command was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountError {
    AlreadyOpen,
    NotOpen,
    ZeroAmount,
    InsufficientFunds { balance: u64, requested: u64 },
}

impl fmt::Display for AccountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountError::AlreadyOpen => f.write_str("the account is already open"),
            AccountError::NotOpen => f.write_str("the account is not open"),
            AccountError::ZeroAmount => f.write_str("the amount must be positive"),
            AccountError::InsufficientFunds { balance, requested } => {
                write!(f, "balance {balance} is less than {requested}")
            }
        }
    }
}

impl std::error::Error for AccountError {}

impl Account {
    pub fn open(&self, owner: &str) -> Result<Vec<AccountEvent>, AccountError> {
        if self.owner.is_some() {
            return Err(AccountError::AlreadyOpen);
        }
        Ok(vec![Opened {
            owner: owner.to_owned(),
        }
        .into()])
    }

    pub fn deposit(&self, amount: u64, reference: &str) -> Result<Vec<AccountEvent>, AccountError> {
        if self.owner.is_none() {
            return Err(AccountError::NotOpen);
        }
        if amount == 0 {
            return Err(AccountError::ZeroAmount);
        }
        Ok(vec![Deposited {
            amount,
            reference: reference.to_owned(),
        }
        .into()])
    }

    pub fn withdraw(&self, amount: u64) -> Result<Vec<AccountEvent>, AccountError> {
        if self.owner.is_none() {
            return Err(AccountError::NotOpen);
        }
        if amount == 0 {
            return Err(AccountError::ZeroAmount);
        }
        if amount > self.balance {
            return Err(AccountError::InsufficientFunds {
                balance: self.balance,
                requested: amount,
            });
        }
        Ok(vec![Withdrawn { amount }.into()])
    }
}

/// A deposit event.
pub fn deposited(amount: u64, reference: &str) -> AccountEvent {
    Deposited {
        amount,
        reference: reference.to_owned(),
    }
    .into()
}

/// An opening event.
pub fn opened(owner: &str) -> AccountEvent {
    Opened {
        owner: owner.to_owned(),
    }
    .into()
}

/// A withdrawal event.
pub fn withdrawn(amount: u64) -> AccountEvent {
    Withdrawn { amount }.into()
}
