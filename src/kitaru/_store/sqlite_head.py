# ruff: noqa: E501
"""The SQLite schema at ``REVISION`` as the migrations create it (generated: do not
edit; regenerate with ``python -m kitaru._store._sqlite_new``, see ``_sqlite_new``)."""

REVISION = "0017"

DDL: tuple[str, ...] = (
    "CREATE TABLE kitaru_alembic_version (\n\tversion_num VARCHAR(32) NOT NULL, \n\tCONSTRAINT kitaru_alembic_version_pkc PRIMARY KEY (version_num)\n)",
    "CREATE TABLE kitaru_executions (\n\tid VARCHAR(36) NOT NULL, \n\tflow_name VARCHAR(255) NOT NULL, \n\tflow_ref JSON NOT NULL, \n\tstatus VARCHAR(16) NOT NULL, \n\tstack VARCHAR(255) NOT NULL, \n\tconfig JSON NOT NULL, \n\tinputs_artifact_id VARCHAR(36), \n\tresult_artifact_id VARCHAR(36), \n\tfailure JSON, \n\tmetadata JSON NOT NULL, \n\toriginal_exec_id VARCHAR(36), \n\treplay_plan JSON, \n\tcreated_at FLOAT NOT NULL, \n\tstarted_at FLOAT, \n\tended_at FLOAT, \n\trun_count INTEGER DEFAULT '0' NOT NULL, \n\tlease_owner VARCHAR(64), \n\tlease_expires_at FLOAT, \n\tfence INTEGER DEFAULT '0' NOT NULL, parent_exec_id VARCHAR(36), idempotency_key VARCHAR(255), schedule_name VARCHAR(255), schedule_slot FLOAT, flow_retries INTEGER DEFAULT '0' NOT NULL, \n\tPRIMARY KEY (id)\n)",
    "CREATE INDEX ix_kitaru_executions_flow_created ON kitaru_executions (flow_name, created_at)",
    "CREATE INDEX ix_kitaru_executions_status ON kitaru_executions (status)",
    "CREATE TABLE kitaru_checkpoint_attempts (\n\tid INTEGER NOT NULL, \n\texec_id VARCHAR(36) NOT NULL, \n\tcall_id VARCHAR(512) NOT NULL, \n\tattempt INTEGER NOT NULL, \n\trun INTEGER NOT NULL, \n\tstatus VARCHAR(16) NOT NULL, \n\tstarted_at FLOAT NOT NULL, \n\tended_at FLOAT, \n\texception_type VARCHAR(255), \n\tmessage TEXT, \n\ttraceback TEXT, \n\tPRIMARY KEY (id)\n)",
    "CREATE INDEX ix_kitaru_checkpoint_attempts_call ON kitaru_checkpoint_attempts (exec_id, call_id)",
    "CREATE TABLE kitaru_artifacts (\n\tid VARCHAR(36) NOT NULL, \n\texec_id VARCHAR(36), \n\tcall_id VARCHAR(512), \n\tname VARCHAR(255) NOT NULL, \n\tkind VARCHAR(32) NOT NULL, \n\ttype VARCHAR(32), \n\tserializer VARCHAR(32) NOT NULL, \n\ttype_path VARCHAR(512), \n\tsize INTEGER NOT NULL, \n\tsha256 VARCHAR(64) NOT NULL, \n\tinline_data BLOB, \n\turi VARCHAR(1024), \n\ttags JSON NOT NULL, \n\tcreated_at FLOAT NOT NULL, \n\tPRIMARY KEY (id)\n)",
    "CREATE INDEX ix_kitaru_artifacts_exec ON kitaru_artifacts (exec_id, name)",
    "CREATE TABLE kitaru_logs (\n\tid INTEGER NOT NULL, \n\texec_id VARCHAR(36) NOT NULL, \n\tcall_id VARCHAR(512), \n\tcheckpoint VARCHAR(255), \n\tts FLOAT NOT NULL, \n\tstream VARCHAR(16) NOT NULL, \n\tlevel VARCHAR(16), \n\tlogger VARCHAR(255), \n\tmessage TEXT NOT NULL, \n\tPRIMARY KEY (id)\n)",
    "CREATE INDEX ix_kitaru_logs_exec ON kitaru_logs (exec_id, id)",
    "CREATE TABLE \"kitaru_checkpoint_calls\" (\n\texec_id VARCHAR(36) NOT NULL, \n\tcall_id VARCHAR(512) NOT NULL, \n\tseq INTEGER NOT NULL, \n\tname VARCHAR(255) NOT NULL, \n\ttype VARCHAR(64), \n\truntime VARCHAR(16) NOT NULL, \n\tstatus VARCHAR(16) NOT NULL, \n\tartifact_id VARCHAR(36), \n\tcache_key VARCHAR(255), \n\tsource_exec_id VARCHAR(36), \n\tattempts INTEGER DEFAULT '0' NOT NULL, \n\tmetadata JSON NOT NULL, \n\terror JSON, \n\tstarted_at FLOAT, \n\tended_at FLOAT, \n\tconcurrent BOOLEAN DEFAULT 0 NOT NULL, run INTEGER, inputs TEXT, output_serializer VARCHAR(32), output_type_path VARCHAR(512), output_data BLOB, output_crc32 BIGINT, \n\tPRIMARY KEY (exec_id, call_id)\n)",
    "CREATE INDEX ix_kitaru_checkpoint_calls_cache_key ON kitaru_checkpoint_calls (cache_key) WHERE cache_key IS NOT NULL",
    "CREATE TABLE kitaru_service_accounts (\n\tid VARCHAR(36) NOT NULL, \n\tname VARCHAR(255) NOT NULL, \n\tdescription TEXT, \n\tcreated_at FLOAT NOT NULL, \n\tPRIMARY KEY (id), \n\tUNIQUE (name)\n)",
    "CREATE TABLE kitaru_api_keys (\n\tid VARCHAR(36) NOT NULL, \n\taccount_id VARCHAR(36) NOT NULL, \n\tname VARCHAR(255) NOT NULL, \n\taccess VARCHAR(16) NOT NULL, \n\tkey_hash VARCHAR(64) NOT NULL, \n\tcreated_at FLOAT NOT NULL, \n\trotated_at FLOAT, \n\tlast_used_at FLOAT, \n\tPRIMARY KEY (id), \n\tCONSTRAINT uq_kitaru_api_keys_account_name UNIQUE (account_id, name)\n)",
    "CREATE INDEX ix_kitaru_api_keys_account ON kitaru_api_keys (account_id)",
    "CREATE TABLE kitaru_secrets (\n\tid VARCHAR(36) NOT NULL, \n\tname VARCHAR(255) NOT NULL, \n\tprivate BOOLEAN NOT NULL, \n\tkeys JSON NOT NULL, \n\tciphertext TEXT NOT NULL, \n\tcreated_at FLOAT NOT NULL, \n\tupdated_at FLOAT NOT NULL, \n\tPRIMARY KEY (id), \n\tUNIQUE (name)\n)",
    "CREATE INDEX ix_kitaru_executions_parent ON kitaru_executions (parent_exec_id)",
    "CREATE INDEX ix_kitaru_executions_schedule ON kitaru_executions (schedule_name, schedule_slot)",
    "CREATE TABLE kitaru_suspensions (\n\texec_id VARCHAR(36) NOT NULL, \n\tsuspension_id VARCHAR(255) NOT NULL, \n\tkind VARCHAR(16) NOT NULL, \n\tname VARCHAR(255), \n\twake_at FLOAT, \n\tchild_exec_id VARCHAR(36), \n\tstatus VARCHAR(16) NOT NULL, \n\tcreated_at FLOAT NOT NULL, \n\tended_at FLOAT, \n\tPRIMARY KEY (exec_id, suspension_id)\n)",
    "CREATE INDEX ix_kitaru_suspensions_sleeping ON kitaru_suspensions (wake_at) WHERE status = 'pending' AND kind = 'sleep'",
    "CREATE TABLE kitaru_schedules (\n\tname VARCHAR(255) NOT NULL, \n\tflow_name VARCHAR(255) NOT NULL, \n\tflow_ref JSON NOT NULL, \n\tcron VARCHAR(255) NOT NULL, \n\ttimezone VARCHAR(64) NOT NULL, \n\tinputs JSON NOT NULL, \n\tstack VARCHAR(255), \n\tmissed VARCHAR(16) NOT NULL, \n\tpaused BOOLEAN DEFAULT 0 NOT NULL, \n\tcursor FLOAT NOT NULL, \n\tcreated_at FLOAT NOT NULL, \n\tPRIMARY KEY (name)\n)",
    "CREATE TABLE kitaru_schedule_fires (\n\tschedule_name VARCHAR(255) NOT NULL, \n\tslot FLOAT NOT NULL, \n\texec_id VARCHAR(36) NOT NULL, \n\tclaimed_by VARCHAR(64) NOT NULL, \n\tclaimed_at FLOAT NOT NULL, \n\tstarted_at FLOAT, \n\tPRIMARY KEY (schedule_name, slot)\n)",
    "CREATE INDEX ix_kitaru_schedule_fires_unstarted ON kitaru_schedule_fires (claimed_at) WHERE started_at IS NULL",
    'CREATE TABLE "kitaru_events" (\n\texec_id VARCHAR(36) NOT NULL, \n\tseq INTEGER NOT NULL, \n\tkind VARCHAR(255) NOT NULL, \n\tcall_id VARCHAR(512), \n\tcheckpoint VARCHAR(255), \n\tcorrelation_id VARCHAR(255), \n\tidx INTEGER, \n\tpayload TEXT NOT NULL, \n\tts FLOAT NOT NULL, \n\tPRIMARY KEY (exec_id, seq)\n) WITHOUT ROWID',
    'CREATE TABLE "kitaru_waits" (\n\texec_id VARCHAR(36) NOT NULL, \n\twait_id VARCHAR(255) NOT NULL, \n\tname VARCHAR(255), \n\tquestion TEXT, \n\tjson_schema JSON, \n\tschema_pickle BLOB, \n\tmetadata JSON NOT NULL, \n\ttimeout FLOAT, \n\tstatus VARCHAR(16) NOT NULL, \n\tvalue JSON_TEXT, \n\tcreated_at FLOAT NOT NULL, \n\tanswered_at FLOAT, \n\tPRIMARY KEY (exec_id, wait_id)\n)',
    "CREATE INDEX ix_kitaru_waits_status ON kitaru_waits (status)",
)
