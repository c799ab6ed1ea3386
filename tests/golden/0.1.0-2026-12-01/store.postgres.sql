--
-- PostgreSQL database dump
--

\restrict SjBbvwxrnjdO5AE8yPHy9S4gSTbYIqmDwcweGszUuYBIEaQ0KUwM7D159gHB1cU

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: es_test_golden_corpus_writer_0_6d286084dbab; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA es_test_golden_corpus_writer_0_6d286084dbab;


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: events; Type: TABLE; Schema: es_test_golden_corpus_writer_0_6d286084dbab; Owner: -
--

CREATE TABLE es_test_golden_corpus_writer_0_6d286084dbab.events (
    global_position bigint NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id text NOT NULL,
    version bigint NOT NULL,
    event_id uuid NOT NULL,
    event_type text NOT NULL,
    schema_version bigint NOT NULL,
    codec smallint NOT NULL,
    payload bytea NOT NULL,
    metadata json NOT NULL,
    recorded_at bigint NOT NULL,
    CONSTRAINT events_schema_version_check CHECK (((schema_version >= 0) AND (schema_version <= '4294967295'::bigint))),
    CONSTRAINT events_version_check CHECK ((version > 0))
);


--
-- Name: events_global_position_seq; Type: SEQUENCE; Schema: es_test_golden_corpus_writer_0_6d286084dbab; Owner: -
--

ALTER TABLE es_test_golden_corpus_writer_0_6d286084dbab.events ALTER COLUMN global_position ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME es_test_golden_corpus_writer_0_6d286084dbab.events_global_position_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: meta; Type: TABLE; Schema: es_test_golden_corpus_writer_0_6d286084dbab; Owner: -
--

CREATE TABLE es_test_golden_corpus_writer_0_6d286084dbab.meta (
    key text NOT NULL,
    value text NOT NULL
);


--
-- Name: projections; Type: TABLE; Schema: es_test_golden_corpus_writer_0_6d286084dbab; Owner: -
--

CREATE TABLE es_test_golden_corpus_writer_0_6d286084dbab.projections (
    name text NOT NULL,
    "position" bigint NOT NULL,
    codec smallint NOT NULL,
    state bytea NOT NULL,
    saved_at bigint NOT NULL
);


--
-- Name: snapshots; Type: TABLE; Schema: es_test_golden_corpus_writer_0_6d286084dbab; Owner: -
--

CREATE TABLE es_test_golden_corpus_writer_0_6d286084dbab.snapshots (
    aggregate_type text NOT NULL,
    aggregate_id text NOT NULL,
    version bigint NOT NULL,
    fingerprint bigint NOT NULL,
    codec smallint NOT NULL,
    state bytea NOT NULL,
    taken_at bigint NOT NULL
);


--
-- Data for Name: events; Type: TABLE DATA; Schema: es_test_golden_corpus_writer_0_6d286084dbab; Owner: -
--

INSERT INTO es_test_golden_corpus_writer_0_6d286084dbab.events OVERRIDING SYSTEM VALUE VALUES (1, 'order', 'o-1', 1, '01a23182-89e1-72a8-b4f4-32786789f1a4', 'OrderCreated', 1, 1, '\x7b22637573746f6d65725f6964223a22616c696365227d', '{"correlation_id":null,"causation_id":null,"extra":{}}', 1764590460000000);
INSERT INTO es_test_golden_corpus_writer_0_6d286084dbab.events OVERRIDING SYSTEM VALUE VALUES (2, 'order', 'o-1', 2, '01a23182-89e1-72a8-b4f4-3279cce49ee2', 'OrderItemAdded', 1, 1, '\x7b2270726f647563745f6964223a226d7567222c227175616e74697479223a322c22756e69745f7072696365223a313235307d', '{"correlation_id":null,"causation_id":null,"extra":{}}', 1764590460000000);
INSERT INTO es_test_golden_corpus_writer_0_6d286084dbab.events OVERRIDING SYSTEM VALUE VALUES (3, 'order', 'o-1', 3, '01a23182-89e1-72a8-b4f4-327afa7d7d7d', 'OrderItemAdded', 1, 1, '\x7b2270726f647563745f6964223a22746561222c227175616e74697479223a312c22756e69745f7072696365223a3439397d', '{"correlation_id":null,"causation_id":null,"extra":{}}', 1764590460000000);
INSERT INTO es_test_golden_corpus_writer_0_6d286084dbab.events OVERRIDING SYSTEM VALUE VALUES (4, 'order', 'o-1', 4, '01a23182-89e1-72a8-b4f4-327b9b47f070', 'PaymentProcessed', 1, 1, '\x7b22616d6f756e74223a323939397d', '{"correlation_id":null,"causation_id":null,"extra":{}}', 1764590460000000);
INSERT INTO es_test_golden_corpus_writer_0_6d286084dbab.events OVERRIDING SYSTEM VALUE VALUES (5, 'order', 'o-1', 5, '01a23182-89e1-72a8-b4f4-327c5de09336', 'OrderShipped', 1, 1, '\x7b22747261636b696e675f6e756d626572223a22545241434b2d31227d', '{"correlation_id":null,"causation_id":null,"extra":{}}', 1764590460000000);
INSERT INTO es_test_golden_corpus_writer_0_6d286084dbab.events OVERRIDING SYSTEM VALUE VALUES (6, 'order', 'o-2', 1, '01a23182-89eb-757b-aed0-3116c7d7f4e7', 'OrderCreated', 1, 2, '\x03626f62', '{"correlation_id":null,"causation_id":null,"extra":{}}', 1764590520000000);
INSERT INTO es_test_golden_corpus_writer_0_6d286084dbab.events OVERRIDING SYSTEM VALUE VALUES (7, 'order', 'o-2', 2, '01a23182-89eb-757b-aed0-311735343894', 'OrderItemAdded', 1, 2, '\x036d756701e209', '{"correlation_id":null,"causation_id":null,"extra":{}}', 1764590520000000);
INSERT INTO es_test_golden_corpus_writer_0_6d286084dbab.events OVERRIDING SYSTEM VALUE VALUES (8, 'order', 'o-2', 3, '01a23182-89eb-757b-aed0-31183509e7c9', 'OrderItemRemoved', 1, 2, '\x036d756701', '{"correlation_id":null,"causation_id":null,"extra":{}}', 1764590520000000);
INSERT INTO es_test_golden_corpus_writer_0_6d286084dbab.events OVERRIDING SYSTEM VALUE VALUES (9, 'order', 'o-2', 4, '01a23182-89eb-757b-aed0-311945744d8d', 'OrderItemAdded', 1, 2, '\x03706f7401b817', '{"correlation_id":null,"causation_id":null,"extra":{}}', 1764590520000000);
INSERT INTO es_test_golden_corpus_writer_0_6d286084dbab.events OVERRIDING SYSTEM VALUE VALUES (10, 'order', 'o-2', 5, '01a23182-89eb-757b-aed0-311a97d2969b', 'OrderCancelled', 1, 2, '\x0c6368616e676564206d696e64', '{"correlation_id":null,"causation_id":null,"extra":{}}', 1764590520000000);
INSERT INTO es_test_golden_corpus_writer_0_6d286084dbab.events OVERRIDING SYSTEM VALUE VALUES (11, 'order', 'o-3', 1, '01a23182-89fe-76c0-a825-01a8f7cf4bdc', 'OrderCreated', 1, 1, '\x7b22637573746f6d65725f6964223a22616c696365227d', '{"correlation_id":null,"causation_id":null,"extra":{}}', 1764590580000000);
INSERT INTO es_test_golden_corpus_writer_0_6d286084dbab.events OVERRIDING SYSTEM VALUE VALUES (12, 'order', 'o-3', 2, '01a23182-89fe-76c0-a825-01a96c329ed5', 'OrderItemAdded', 1, 1, '\x7b2270726f647563745f6964223a22746561222c227175616e74697479223a332c22756e69745f7072696365223a3439397d', '{"correlation_id":null,"causation_id":null,"extra":{}}', 1764590580000000);
INSERT INTO es_test_golden_corpus_writer_0_6d286084dbab.events OVERRIDING SYSTEM VALUE VALUES (13, 'order', 'o-4', 1, '01a23182-8a00-70c4-9a67-7b8f4f577713', 'OrderCreated', 1, 2, '\x056361726f6c', '{"correlation_id":null,"causation_id":null,"extra":{}}', 1764590640000000);
INSERT INTO es_test_golden_corpus_writer_0_6d286084dbab.events OVERRIDING SYSTEM VALUE VALUES (14, 'order', 'o-4', 2, '01a23182-8a00-70c4-9a67-7b90b6b10723', 'OrderItemAdded', 1, 2, '\x03706f7401b817', '{"correlation_id":null,"causation_id":null,"extra":{}}', 1764590640000000);
INSERT INTO es_test_golden_corpus_writer_0_6d286084dbab.events OVERRIDING SYSTEM VALUE VALUES (15, 'order', 'o-4', 3, '01a23182-8a00-70c4-9a67-7b91baf6eb50', 'PaymentProcessed', 1, 2, '\xb817', '{"correlation_id":null,"causation_id":null,"extra":{}}', 1764590640000000);


--
-- Data for Name: meta; Type: TABLE DATA; Schema: es_test_golden_corpus_writer_0_6d286084dbab; Owner: -
--

INSERT INTO es_test_golden_corpus_writer_0_6d286084dbab.meta VALUES ('format', 'es-core event store');
INSERT INTO es_test_golden_corpus_writer_0_6d286084dbab.meta VALUES ('schema_version', '2');


--
-- Data for Name: projections; Type: TABLE DATA; Schema: es_test_golden_corpus_writer_0_6d286084dbab; Owner: -
--

INSERT INTO es_test_golden_corpus_writer_0_6d286084dbab.projections VALUES ('order-summaries', 15, 2, '\x04036f2d31036f2d3105616c6963650302036d756702e2090374656101f30303b71701b71780dcd6b8d7b8a20680dcd6b8d7b8a20605036f2d32036f2d3203626f62040103706f7401b81701b8170080f8f2f1d7b8a20680f8f2f1d7b8a20605036f2d33036f2d3305616c69636501010374656103f30303d90b0080948fabd8b8a20680948fabd8b8a20602036f2d34036f2d34056361726f6c020103706f7401b81701b81701b81780b0abe4d8b8a20680b0abe4d8b8a20603', 1764590640000000);
INSERT INTO es_test_golden_corpus_writer_0_6d286084dbab.projections VALUES ('inventory', 15, 2, '\x64000003036d7567000203706f74010003746561030102036f2d33010374656103036f2d340103706f740100', 1764590640000000);
INSERT INTO es_test_golden_corpus_writer_0_6d286084dbab.projections VALUES ('customer-histories', 15, 2, '\x0305616c69636505616c69636502036f2d31036f2d3301b7170080dcd6b8d7b8a20680948fabd8b8a20603626f6203626f6201036f2d3200000180f8f2f1d7b8a20680f8f2f1d7b8a206056361726f6c056361726f6c01036f2d3401b8170080b0abe4d8b8a20680b0abe4d8b8a20602036f2d3305616c69636500036f2d34056361726f6c01b817', 1764590640000000);


--
-- Data for Name: snapshots; Type: TABLE DATA; Schema: es_test_golden_corpus_writer_0_6d286084dbab; Owner: -
--



--
-- Name: events_global_position_seq; Type: SEQUENCE SET; Schema: es_test_golden_corpus_writer_0_6d286084dbab; Owner: -
--

SELECT pg_catalog.setval('es_test_golden_corpus_writer_0_6d286084dbab.events_global_position_seq', 15, true);


--
-- Name: events events_aggregate_type_aggregate_id_version_key; Type: CONSTRAINT; Schema: es_test_golden_corpus_writer_0_6d286084dbab; Owner: -
--

ALTER TABLE ONLY es_test_golden_corpus_writer_0_6d286084dbab.events
    ADD CONSTRAINT events_aggregate_type_aggregate_id_version_key UNIQUE (aggregate_type, aggregate_id, version);


--
-- Name: events events_event_id_key; Type: CONSTRAINT; Schema: es_test_golden_corpus_writer_0_6d286084dbab; Owner: -
--

ALTER TABLE ONLY es_test_golden_corpus_writer_0_6d286084dbab.events
    ADD CONSTRAINT events_event_id_key UNIQUE (event_id);


--
-- Name: events events_pkey; Type: CONSTRAINT; Schema: es_test_golden_corpus_writer_0_6d286084dbab; Owner: -
--

ALTER TABLE ONLY es_test_golden_corpus_writer_0_6d286084dbab.events
    ADD CONSTRAINT events_pkey PRIMARY KEY (global_position);


--
-- Name: meta meta_pkey; Type: CONSTRAINT; Schema: es_test_golden_corpus_writer_0_6d286084dbab; Owner: -
--

ALTER TABLE ONLY es_test_golden_corpus_writer_0_6d286084dbab.meta
    ADD CONSTRAINT meta_pkey PRIMARY KEY (key);


--
-- Name: projections projections_pkey; Type: CONSTRAINT; Schema: es_test_golden_corpus_writer_0_6d286084dbab; Owner: -
--

ALTER TABLE ONLY es_test_golden_corpus_writer_0_6d286084dbab.projections
    ADD CONSTRAINT projections_pkey PRIMARY KEY (name);


--
-- Name: snapshots snapshots_pkey; Type: CONSTRAINT; Schema: es_test_golden_corpus_writer_0_6d286084dbab; Owner: -
--

ALTER TABLE ONLY es_test_golden_corpus_writer_0_6d286084dbab.snapshots
    ADD CONSTRAINT snapshots_pkey PRIMARY KEY (aggregate_type, aggregate_id);


--
-- PostgreSQL database dump complete
--

\unrestrict SjBbvwxrnjdO5AE8yPHy9S4gSTbYIqmDwcweGszUuYBIEaQ0KUwM7D159gHB1cU

