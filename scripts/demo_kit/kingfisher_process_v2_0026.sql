-- Kingfisher Process v2 as a database migrated only to mid-2022 (migrations 0001 to 0026): it still has v1's
-- `check_data` beside v2's `completed_at`, no `scrapyd_job` (0033) and no `compilation_enqueued` (0049); a
-- processing step's `collection_id` may be NULL (0022) and its file is named by `collection_file_id`.
-- Same harness conventions as kingfisher_process_v2.sql.

CREATE TABLE django_migrations (
    id serial PRIMARY KEY,
    app varchar(255) NOT NULL,
    name varchar(255) NOT NULL,
    applied timestamp with time zone NOT NULL DEFAULT now()
);

CREATE TABLE collection (
    id bigserial PRIMARY KEY,
    source_id text NOT NULL,
    data_version timestamp with time zone NOT NULL,
    store_start_at timestamp with time zone NOT NULL DEFAULT now(),
    store_end_at timestamp with time zone NULL,
    sample boolean NOT NULL DEFAULT false,
    check_data boolean NOT NULL DEFAULT false,
    transform_type text NOT NULL DEFAULT '',
    deleted_at timestamp with time zone NULL,
    cached_releases_count integer NULL,
    cached_records_count integer NULL,
    cached_compiled_releases_count integer NULL,
    transform_from_collection_id bigint NULL
        REFERENCES collection (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    steps jsonb NULL DEFAULT '[]'::jsonb,
    options jsonb NULL DEFAULT '{}'::jsonb,
    expected_files_count integer NULL,
    data_type jsonb NULL DEFAULT '{}'::jsonb,
    compilation_started boolean NOT NULL DEFAULT false,
    completed_at timestamp with time zone NULL
);

CREATE UNIQUE INDEX unique_collection_identifiers ON collection (source_id, data_version, sample)
    WHERE transform_type = '';

CREATE TABLE collection_note (
    id bigserial PRIMARY KEY,
    collection_id bigint NOT NULL REFERENCES collection (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    note text NOT NULL,
    stored_at timestamp with time zone NOT NULL DEFAULT now(),
    code text NOT NULL DEFAULT '',
    data jsonb NULL DEFAULT '{}'::jsonb
);

CREATE TABLE collection_file (
    id bigserial PRIMARY KEY,
    collection_id bigint NOT NULL REFERENCES collection (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    filename text NOT NULL DEFAULT '',
    url text NOT NULL DEFAULT '',
    warnings jsonb NULL,
    errors jsonb NULL
);

CREATE TABLE processing_step (
    id bigserial PRIMARY KEY,
    collection_file_id bigint NOT NULL
        REFERENCES collection_file (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    collection_id bigint NULL REFERENCES collection (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    ocid text NOT NULL DEFAULT '',
    name text NOT NULL
);
