BEGIN TRANSACTION;
CREATE TABLE sync_history (
	id INTEGER NOT NULL, 
	run_id VARCHAR(128) NOT NULL, 
	entity VARCHAR(64) NOT NULL, 
	outreach_id BIGINT NOT NULL, 
	workbooks_id BIGINT, 
	outcome VARCHAR(16) NOT NULL, 
	reason VARCHAR(64), 
	error TEXT, 
	outreach_updated_at DATETIME, 
	window_start DATETIME, 
	window_end DATETIME, 
	values_hash VARCHAR(64), 
	diff_json TEXT, 
	recorded_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "sync_history" VALUES(1,'run-1','accounts',7,7001,'created',NULL,NULL,'2026-11-28 10:05:30.123456','2026-11-28 10:00:00.000000','2026-11-28 11:00:00.000000','d696e003b24d1432925985785c93a049755dfa0dac9d80ab83787e2080306dee','{"name":"Acme Ltd","website":"acme.example"}','2026-11-29 14:02:13.647533');
INSERT INTO "sync_history" VALUES(2,'run-1','prospects',1,9001,'created',NULL,NULL,'2026-11-28 10:15:00.000000','2026-11-28 10:00:00.000000','2026-11-28 11:00:00.000000','47775831a250ba793fbaa9f8e67a75b82a3a451064641e5385e9a6ebb033d954','{"person_name":"Ann Example","score":3}','2026-11-29 14:02:13.688044');
INSERT INTO "sync_history" VALUES(3,'run-1','prospects',2,NULL,'failed','invalid','prospect 2: main_location[email] is blank (required)',NULL,'2026-11-28 10:00:00.000000','2026-11-28 11:00:00.000000',NULL,NULL,'2026-11-29 14:02:13.688044');
INSERT INTO "sync_history" VALUES(4,'run-1','prospects',3,NULL,'skipped','sync_disabled',NULL,NULL,'2026-11-28 10:00:00.000000','2026-11-28 11:00:00.000000',NULL,NULL,'2026-11-29 14:02:13.688044');
INSERT INTO "sync_history" VALUES(5,'run-2','prospects',1,9001,'updated',NULL,NULL,'2026-11-28 11:40:01.000000','2026-11-28 11:00:00.000000','2026-11-28 12:00:00.000000','2fd9c40bea75989f4a6d4b07c364289b407a68b1f248945f20eabcd3554cfc2f','{"company":"Acme Ltd","person_name":"Ann Example-Smith"}','2026-11-29 14:02:13.703219');
INSERT INTO "sync_history" VALUES(6,'run-2','prospects',2,9002,'created',NULL,NULL,'2026-11-28 11:02:00.000000','2026-11-28 11:00:00.000000','2026-11-28 12:00:00.000000','221857e42ce265654159c2736708d5c4522a17661c22cc00b96404fc4d7c4bb4','{"person_name":"Bo \u00dcn\u00efcode"}','2026-11-29 14:02:13.703219');
INSERT INTO "sync_history" VALUES(7,'run-2','prospects',4,NULL,'failed',NULL,'Workbooks refused prospect 4: lock_version is stale',NULL,'2026-11-28 11:00:00.000000','2026-11-28 12:00:00.000000',NULL,NULL,'2026-11-29 14:02:13.703219');
INSERT INTO "sync_history" VALUES(8,'run-2','prospects',3,NULL,'skipped','stale_version',NULL,NULL,'2026-11-28 11:00:00.000000','2026-11-28 12:00:00.000000',NULL,NULL,'2026-11-29 14:02:13.713664');
CREATE TABLE sync_pending_relation (
	entity VARCHAR(64) NOT NULL, 
	outreach_id BIGINT NOT NULL, 
	field VARCHAR(128) NOT NULL, 
	target_entity VARCHAR(64) NOT NULL, 
	target_outreach_id BIGINT NOT NULL, 
	first_run_id VARCHAR(128) NOT NULL, 
	last_run_id VARCHAR(128) NOT NULL, 
	recorded_at DATETIME NOT NULL, 
	PRIMARY KEY (entity, outreach_id, field, target_entity, target_outreach_id)
);
INSERT INTO "sync_pending_relation" VALUES('prospects',2,'organisation','accounts',9,'run-2','run-2','2026-11-29 14:02:13.703219');
CREATE TABLE sync_record_state (
	entity VARCHAR(64) NOT NULL, 
	outreach_id BIGINT NOT NULL, 
	workbooks_id BIGINT, 
	outreach_updated_at DATETIME, 
	values_hash VARCHAR(64), 
	values_json TEXT, 
	last_outcome VARCHAR(16) NOT NULL, 
	last_reason VARCHAR(64), 
	last_error TEXT, 
	window_start DATETIME, 
	window_end DATETIME, 
	last_run_id VARCHAR(128) NOT NULL, 
	needs_retry BOOLEAN NOT NULL, 
	recorded_at DATETIME NOT NULL, 
	PRIMARY KEY (entity, outreach_id)
);
INSERT INTO "sync_record_state" VALUES('accounts',7,7001,'2026-11-28 10:05:30.123456','d696e003b24d1432925985785c93a049755dfa0dac9d80ab83787e2080306dee','{"name":"Acme Ltd","website":"acme.example"}','created',NULL,NULL,'2026-11-28 10:00:00.000000','2026-11-28 11:00:00.000000','run-1',0,'2026-11-29 14:02:13.647533');
INSERT INTO "sync_record_state" VALUES('prospects',1,9001,'2026-11-28 11:40:01.000000','2fd9c40bea75989f4a6d4b07c364289b407a68b1f248945f20eabcd3554cfc2f','{"company":"Acme Ltd","person_name":"Ann Example-Smith","score":3}','updated',NULL,NULL,'2026-11-28 11:00:00.000000','2026-11-28 12:00:00.000000','run-2',0,'2026-11-29 14:02:13.703219');
INSERT INTO "sync_record_state" VALUES('prospects',2,9002,'2026-11-28 11:02:00.000000','221857e42ce265654159c2736708d5c4522a17661c22cc00b96404fc4d7c4bb4','{"company":"Acme Ltd","person_name":"Bo \u00dcn\u00efcode","score":null}','created',NULL,NULL,'2026-11-28 11:00:00.000000','2026-11-28 12:00:00.000000','run-2',0,'2026-11-29 14:02:13.703219');
INSERT INTO "sync_record_state" VALUES('prospects',3,NULL,NULL,NULL,NULL,'skipped','stale_version',NULL,'2026-11-28 11:00:00.000000','2026-11-28 12:00:00.000000','run-2',0,'2026-11-29 14:02:13.713664');
INSERT INTO "sync_record_state" VALUES('prospects',4,NULL,NULL,NULL,NULL,'failed',NULL,'Workbooks refused prospect 4: lock_version is stale','2026-11-28 11:00:00.000000','2026-11-28 12:00:00.000000','run-2',1,'2026-11-29 14:02:13.703219');
CREATE TABLE sync_run (
	run_id VARCHAR(128) NOT NULL, 
	entity VARCHAR(64) NOT NULL, 
	window_start DATETIME, 
	window_end DATETIME, 
	created INTEGER NOT NULL, 
	updated INTEGER NOT NULL, 
	unchanged INTEGER NOT NULL, 
	skipped INTEGER NOT NULL, 
	failed INTEGER NOT NULL, 
	started_at DATETIME NOT NULL, 
	finished_at DATETIME, 
	PRIMARY KEY (run_id, entity)
);
INSERT INTO "sync_run" VALUES('run-1','accounts','2026-11-28 10:00:00.000000','2026-11-28 11:00:00.000000',1,0,0,0,0,'2026-11-29 14:02:13.644499','2026-11-29 14:02:13.680149');
INSERT INTO "sync_run" VALUES('run-1','prospects','2026-11-28 10:00:00.000000','2026-11-28 11:00:00.000000',1,0,0,1,1,'2026-11-29 14:02:13.687335','2026-11-29 14:02:13.700874');
INSERT INTO "sync_run" VALUES('run-2','prospects','2026-11-28 11:00:00.000000','2026-11-28 12:00:00.000000',1,1,0,1,1,'2026-11-29 14:02:13.702322',NULL);
INSERT INTO "sync_run" VALUES('run-3','accounts','2026-11-28 11:00:00.000000','2026-11-28 12:00:00.000000',0,0,0,0,0,'2026-11-29 14:02:13.721882',NULL);
CREATE INDEX ix_sync_history_run ON sync_history (run_id);
CREATE INDEX ix_sync_history_record ON sync_history (entity, outreach_id);
CREATE INDEX ix_sync_pending_target ON sync_pending_relation (target_entity, target_outreach_id);
COMMIT;
