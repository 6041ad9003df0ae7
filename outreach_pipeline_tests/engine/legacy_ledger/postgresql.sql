--
-- PostgreSQL database dump
--


-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

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

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: sync_history; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.sync_history (
    id bigint NOT NULL,
    run_id character varying(128) NOT NULL,
    entity character varying(64) NOT NULL,
    outreach_id bigint NOT NULL,
    workbooks_id bigint,
    outcome character varying(16) NOT NULL,
    reason character varying(64),
    error text,
    outreach_updated_at timestamp with time zone,
    window_start timestamp with time zone,
    window_end timestamp with time zone,
    values_hash character varying(64),
    diff_json text,
    recorded_at timestamp with time zone NOT NULL
);


--
-- Name: sync_history_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.sync_history_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: sync_history_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.sync_history_id_seq OWNED BY public.sync_history.id;


--
-- Name: sync_pending_relation; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.sync_pending_relation (
    entity character varying(64) NOT NULL,
    outreach_id bigint NOT NULL,
    field character varying(128) NOT NULL,
    target_entity character varying(64) NOT NULL,
    target_outreach_id bigint NOT NULL,
    first_run_id character varying(128) NOT NULL,
    last_run_id character varying(128) NOT NULL,
    recorded_at timestamp with time zone NOT NULL
);


--
-- Name: sync_record_state; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.sync_record_state (
    entity character varying(64) NOT NULL,
    outreach_id bigint NOT NULL,
    workbooks_id bigint,
    outreach_updated_at timestamp with time zone,
    values_hash character varying(64),
    values_json text,
    last_outcome character varying(16) NOT NULL,
    last_reason character varying(64),
    last_error text,
    window_start timestamp with time zone,
    window_end timestamp with time zone,
    last_run_id character varying(128) NOT NULL,
    needs_retry boolean NOT NULL,
    recorded_at timestamp with time zone NOT NULL
);


--
-- Name: sync_run; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.sync_run (
    run_id character varying(128) NOT NULL,
    entity character varying(64) NOT NULL,
    window_start timestamp with time zone,
    window_end timestamp with time zone,
    created integer NOT NULL,
    updated integer NOT NULL,
    unchanged integer NOT NULL,
    skipped integer NOT NULL,
    failed integer NOT NULL,
    started_at timestamp with time zone NOT NULL,
    finished_at timestamp with time zone
);


--
-- Name: sync_history id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.sync_history ALTER COLUMN id SET DEFAULT nextval('public.sync_history_id_seq'::regclass);


--
-- Data for Name: sync_history; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.sync_history VALUES (1, 'run-1', 'accounts', 7, 7001, 'created', NULL, NULL, '2026-11-28 10:05:30.123456+00', '2026-11-28 10:00:00+00', '2026-11-28 11:00:00+00', 'd696e003b24d1432925985785c93a049755dfa0dac9d80ab83787e2080306dee', '{"name":"Acme Ltd","website":"acme.example"}', '2026-11-29 14:02:14.06272+00');
INSERT INTO public.sync_history VALUES (2, 'run-1', 'prospects', 1, 9001, 'created', NULL, NULL, '2026-11-28 10:15:00+00', '2026-11-28 10:00:00+00', '2026-11-28 11:00:00+00', '47775831a250ba793fbaa9f8e67a75b82a3a451064641e5385e9a6ebb033d954', '{"person_name":"Ann Example","score":3}', '2026-11-29 14:02:14.091655+00');
INSERT INTO public.sync_history VALUES (3, 'run-1', 'prospects', 2, NULL, 'failed', 'invalid', 'prospect 2: main_location[email] is blank (required)', NULL, '2026-11-28 10:00:00+00', '2026-11-28 11:00:00+00', NULL, NULL, '2026-11-29 14:02:14.091655+00');
INSERT INTO public.sync_history VALUES (4, 'run-1', 'prospects', 3, NULL, 'skipped', 'sync_disabled', NULL, NULL, '2026-11-28 10:00:00+00', '2026-11-28 11:00:00+00', NULL, NULL, '2026-11-29 14:02:14.091655+00');
INSERT INTO public.sync_history VALUES (5, 'run-2', 'prospects', 1, 9001, 'updated', NULL, NULL, '2026-11-28 11:40:01+00', '2026-11-28 11:00:00+00', '2026-11-28 12:00:00+00', '2fd9c40bea75989f4a6d4b07c364289b407a68b1f248945f20eabcd3554cfc2f', '{"company":"Acme Ltd","person_name":"Ann Example-Smith"}', '2026-11-29 14:02:14.109065+00');
INSERT INTO public.sync_history VALUES (6, 'run-2', 'prospects', 2, 9002, 'created', NULL, NULL, '2026-11-28 11:02:00+00', '2026-11-28 11:00:00+00', '2026-11-28 12:00:00+00', '221857e42ce265654159c2736708d5c4522a17661c22cc00b96404fc4d7c4bb4', '{"person_name":"Bo \u00dcn\u00efcode"}', '2026-11-29 14:02:14.109065+00');
INSERT INTO public.sync_history VALUES (7, 'run-2', 'prospects', 4, NULL, 'failed', NULL, 'Workbooks refused prospect 4: lock_version is stale', NULL, '2026-11-28 11:00:00+00', '2026-11-28 12:00:00+00', NULL, NULL, '2026-11-29 14:02:14.109065+00');
INSERT INTO public.sync_history VALUES (8, 'run-2', 'prospects', 3, NULL, 'skipped', 'stale_version', NULL, NULL, '2026-11-28 11:00:00+00', '2026-11-28 12:00:00+00', NULL, NULL, '2026-11-29 14:02:14.117988+00');


--
-- Data for Name: sync_pending_relation; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.sync_pending_relation VALUES ('prospects', 2, 'organisation', 'accounts', 9, 'run-2', 'run-2', '2026-11-29 14:02:14.109065+00');


--
-- Data for Name: sync_record_state; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.sync_record_state VALUES ('accounts', 7, 7001, '2026-11-28 10:05:30.123456+00', 'd696e003b24d1432925985785c93a049755dfa0dac9d80ab83787e2080306dee', '{"name":"Acme Ltd","website":"acme.example"}', 'created', NULL, NULL, '2026-11-28 10:00:00+00', '2026-11-28 11:00:00+00', 'run-1', false, '2026-11-29 14:02:14.06272+00');
INSERT INTO public.sync_record_state VALUES ('prospects', 1, 9001, '2026-11-28 11:40:01+00', '2fd9c40bea75989f4a6d4b07c364289b407a68b1f248945f20eabcd3554cfc2f', '{"company":"Acme Ltd","person_name":"Ann Example-Smith","score":3}', 'updated', NULL, NULL, '2026-11-28 11:00:00+00', '2026-11-28 12:00:00+00', 'run-2', false, '2026-11-29 14:02:14.109065+00');
INSERT INTO public.sync_record_state VALUES ('prospects', 2, 9002, '2026-11-28 11:02:00+00', '221857e42ce265654159c2736708d5c4522a17661c22cc00b96404fc4d7c4bb4', '{"company":"Acme Ltd","person_name":"Bo \u00dcn\u00efcode","score":null}', 'created', NULL, NULL, '2026-11-28 11:00:00+00', '2026-11-28 12:00:00+00', 'run-2', false, '2026-11-29 14:02:14.109065+00');
INSERT INTO public.sync_record_state VALUES ('prospects', 4, NULL, NULL, NULL, NULL, 'failed', NULL, 'Workbooks refused prospect 4: lock_version is stale', '2026-11-28 11:00:00+00', '2026-11-28 12:00:00+00', 'run-2', true, '2026-11-29 14:02:14.109065+00');
INSERT INTO public.sync_record_state VALUES ('prospects', 3, NULL, NULL, NULL, NULL, 'skipped', 'stale_version', NULL, '2026-11-28 11:00:00+00', '2026-11-28 12:00:00+00', 'run-2', false, '2026-11-29 14:02:14.117988+00');


--
-- Data for Name: sync_run; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.sync_run VALUES ('run-1', 'accounts', '2026-11-28 10:00:00+00', '2026-11-28 11:00:00+00', 1, 0, 0, 0, 0, '2026-11-29 14:02:14.060574+00', '2026-11-29 14:02:14.085374+00');
INSERT INTO public.sync_run VALUES ('run-1', 'prospects', '2026-11-28 10:00:00+00', '2026-11-28 11:00:00+00', 1, 0, 0, 1, 1, '2026-11-29 14:02:14.090307+00', '2026-11-29 14:02:14.104085+00');
INSERT INTO public.sync_run VALUES ('run-2', 'prospects', '2026-11-28 11:00:00+00', '2026-11-28 12:00:00+00', 1, 1, 0, 1, 1, '2026-11-29 14:02:14.107781+00', NULL);
INSERT INTO public.sync_run VALUES ('run-3', 'accounts', '2026-11-28 11:00:00+00', '2026-11-28 12:00:00+00', 0, 0, 0, 0, 0, '2026-11-29 14:02:14.124227+00', NULL);


--
-- Name: sync_history_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.sync_history_id_seq', 8, true);


--
-- Name: sync_history sync_history_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.sync_history
    ADD CONSTRAINT sync_history_pkey PRIMARY KEY (id);


--
-- Name: sync_pending_relation sync_pending_relation_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.sync_pending_relation
    ADD CONSTRAINT sync_pending_relation_pkey PRIMARY KEY (entity, outreach_id, field, target_entity, target_outreach_id);


--
-- Name: sync_record_state sync_record_state_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.sync_record_state
    ADD CONSTRAINT sync_record_state_pkey PRIMARY KEY (entity, outreach_id);


--
-- Name: sync_run sync_run_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.sync_run
    ADD CONSTRAINT sync_run_pkey PRIMARY KEY (run_id, entity);


--
-- Name: ix_sync_history_record; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_sync_history_record ON public.sync_history USING btree (entity, outreach_id);


--
-- Name: ix_sync_history_run; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_sync_history_run ON public.sync_history USING btree (run_id);


--
-- Name: ix_sync_pending_target; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_sync_pending_target ON public.sync_pending_relation USING btree (target_entity, target_outreach_id);


--
-- PostgreSQL database dump complete
--


