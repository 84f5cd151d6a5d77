//! Numbered schema migrations, applied in order and recorded in
//! `PRAGMA user_version`. A migration, once released, never changes: a new
//! change is a new entry at the end.

/// Migration `i` upgrades a database from user_version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: tasks, runs, dead letters, and the change log the poller reads.
    r#"
    CREATE TABLE tasks (
        id                   INTEGER PRIMARY KEY AUTOINCREMENT,
        name                 TEXT    NOT NULL CHECK (name <> ''),
        description          TEXT    NOT NULL DEFAULT '',
        schedule             TEXT    NOT NULL,
        command              TEXT    NOT NULL CHECK (command <> ''),
        timezone             TEXT    NOT NULL DEFAULT 'UTC',
        max_retries          INTEGER NOT NULL DEFAULT 3 CHECK (max_retries >= 0),
        retry_delay_seconds  INTEGER NOT NULL DEFAULT 60 CHECK (retry_delay_seconds >= 0),
        timeout_seconds      INTEGER NOT NULL DEFAULT 3600 CHECK (timeout_seconds > 0),
        status               TEXT    NOT NULL DEFAULT 'enabled'
                                     CHECK (status IN ('enabled', 'disabled')),
        pause_on_dead_letter INTEGER NOT NULL DEFAULT 0,
        next_run_at          TEXT,
        last_run_at          TEXT,
        last_status          TEXT,
        locked_at            TEXT,
        created_at           TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        updated_at           TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        revision             INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX tasks_by_revision ON tasks (revision);

    -- Runs keep no foreign key to tasks: a deleted task's history stays
    -- readable until retention removes it.
    CREATE TABLE runs (
        id                   INTEGER PRIMARY KEY AUTOINCREMENT,
        task_id              INTEGER NOT NULL,
        scheduled_for        TEXT    NOT NULL,
        trigger              TEXT    NOT NULL,
        attempt              INTEGER NOT NULL,
        status               TEXT    NOT NULL,
        started_at           TEXT,
        finished_at          TEXT,
        duration_ms          INTEGER,
        exit_code            INTEGER,
        output               TEXT    NOT NULL DEFAULT '',
        output_dropped_bytes INTEGER NOT NULL DEFAULT 0,
        error                TEXT,
        retry_at             TEXT
    );
    -- Each scheduled occurrence runs at most once per attempt, whatever
    -- happens to the process in between. Manual runs are not occurrences.
    CREATE UNIQUE INDEX runs_once_per_occurrence
        ON runs (task_id, scheduled_for, attempt) WHERE trigger <> 'manual';
    CREATE INDEX runs_by_task ON runs (task_id, id);
    CREATE INDEX runs_pending_retry ON runs (retry_at) WHERE retry_at IS NOT NULL;
    CREATE INDEX runs_running ON runs (status) WHERE status = 'running';

    CREATE TABLE dead_letters (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        task_id       INTEGER NOT NULL,
        run_id        INTEGER NOT NULL,
        scheduled_for TEXT    NOT NULL,
        failed_at     TEXT    NOT NULL,
        attempts      INTEGER NOT NULL,
        last_error    TEXT,
        exit_code     INTEGER,
        output        TEXT    NOT NULL DEFAULT ''
    );
    CREATE INDEX dead_letters_by_task ON dead_letters (task_id, id);

    -- A change counter and triggers, so that edits made with any SQL client
    -- are seen by the poller without scanning every task.
    CREATE TABLE change_seq (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
    INSERT INTO change_seq (id, seq) VALUES (1, 0);
    CREATE TABLE task_tombstones (task_id INTEGER NOT NULL, revision INTEGER NOT NULL);
    CREATE INDEX task_tombstones_by_revision ON task_tombstones (revision);

    CREATE TRIGGER tasks_revision_on_insert AFTER INSERT ON tasks BEGIN
        UPDATE change_seq SET seq = seq + 1 WHERE id = 1;
        UPDATE tasks SET revision = (SELECT seq FROM change_seq WHERE id = 1) WHERE id = NEW.id;
    END;
    CREATE TRIGGER tasks_revision_on_update
        AFTER UPDATE OF name, description, schedule, command, timezone, max_retries,
                        retry_delay_seconds, timeout_seconds, status, pause_on_dead_letter
        ON tasks
    BEGIN
        UPDATE change_seq SET seq = seq + 1 WHERE id = 1;
        UPDATE tasks SET revision = (SELECT seq FROM change_seq WHERE id = 1) WHERE id = NEW.id;
    END;
    CREATE TRIGGER tasks_tombstone_on_delete AFTER DELETE ON tasks BEGIN
        UPDATE change_seq SET seq = seq + 1 WHERE id = 1;
        INSERT INTO task_tombstones (task_id, revision)
            VALUES (OLD.id, (SELECT seq FROM change_seq WHERE id = 1));
    END;

    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    "#,
    // 2: per-task environment, working directory, overlap and catch-up
    // policies; queued runs; the update trigger learns the new columns.
    r#"
    ALTER TABLE tasks ADD COLUMN env TEXT NOT NULL DEFAULT '';
    ALTER TABLE tasks ADD COLUMN working_dir TEXT;
    ALTER TABLE tasks ADD COLUMN overlap TEXT NOT NULL DEFAULT 'skip'
        CHECK (overlap IN ('skip', 'queue', 'replace'));
    ALTER TABLE tasks ADD COLUMN catch_up TEXT NOT NULL DEFAULT 'latest'
        CHECK (catch_up IN ('none', 'latest', 'all'));
    ALTER TABLE tasks ADD COLUMN misfire_grace_seconds INTEGER
        CHECK (misfire_grace_seconds IS NULL OR misfire_grace_seconds >= 0);
    ALTER TABLE tasks ADD COLUMN catch_up_limit INTEGER NOT NULL DEFAULT 10
        CHECK (catch_up_limit >= 1);

    DROP TRIGGER tasks_revision_on_update;
    CREATE TRIGGER tasks_revision_on_update
        AFTER UPDATE OF name, description, schedule, command, timezone, max_retries,
                        retry_delay_seconds, timeout_seconds, status, pause_on_dead_letter,
                        env, working_dir, overlap, catch_up, misfire_grace_seconds,
                        catch_up_limit
        ON tasks
    BEGIN
        UPDATE change_seq SET seq = seq + 1 WHERE id = 1;
        UPDATE tasks SET revision = (SELECT seq FROM change_seq WHERE id = 1) WHERE id = NEW.id;
    END;

    CREATE INDEX runs_queued ON runs (task_id, scheduled_for) WHERE status = 'queued';

    -- The process group of a running run, so that a restart after a crash
    -- can kill what the dead service left running.
    ALTER TABLE runs ADD COLUMN pid INTEGER;
    ALTER TABLE runs ADD COLUMN pid_start_ticks INTEGER;
    "#,
];
