-- Kingfisher Process v2 (Django, current): the tables this project reads, as Django's migrations leave them
-- (process/models.py: Collection and CollectionNote, up to migration 0049).
--
-- Django declares every foreign key DEFERRABLE INITIALLY DEFERRED. It emulates on_delete=CASCADE in Python, so a
-- real v2 database has no ON DELETE action; this harness adds ON DELETE CASCADE so that a test can delete a
-- collection row outright (Kingfisher Process deletes rows, not only marks them) in one statement.
--
-- The DEFAULT clauses are also the harness's: Django applies field defaults in Python and leaves none in the
-- database. They only spare test fixtures from spelling out columns no query of ours reads.

CREATE TABLE collection (
    id bigserial PRIMARY KEY,
    source_id text NOT NULL,
    -- Django stores aware datetimes; Kingfisher Process writes naive UTC values into it.
    data_version timestamp with time zone NOT NULL,
    sample boolean NOT NULL DEFAULT false,
    steps jsonb NOT NULL DEFAULT '[]'::jsonb,
    options jsonb NOT NULL DEFAULT '{}'::jsonb,
    expected_files_count integer NULL,
    data_type jsonb NOT NULL DEFAULT '{}'::jsonb,
    compilation_started boolean NOT NULL DEFAULT false,
    compilation_enqueued boolean NOT NULL DEFAULT false,
    transform_from_collection_id bigint NULL
        CONSTRAINT collection_transform_from_collection_id_fk REFERENCES collection (id)
        ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    transform_type text NOT NULL DEFAULT '',
    scrapyd_job text NOT NULL DEFAULT '',
    cached_releases_count integer NULL,
    cached_records_count integer NULL,
    cached_compiled_releases_count integer NULL,
    store_start_at timestamp with time zone NOT NULL DEFAULT now(),
    store_end_at timestamp with time zone NULL,
    deleted_at timestamp with time zone NULL,
    completed_at timestamp with time zone NULL,
    -- A collection is compiled or upgraded at most once.
    CONSTRAINT unique_upgraded_compiled_collection UNIQUE (transform_from_collection_id, transform_type)
);

CREATE INDEX collection_transform_from_collection_id_idx ON collection (transform_from_collection_id);

-- Django creates a conditional UniqueConstraint as a partial unique index.
CREATE UNIQUE INDEX unique_collection_identifiers ON collection (source_id, data_version, sample)
    WHERE transform_type = '';

-- The timestamp column is `stored_at` (as in v1), not `created_at`.
CREATE TABLE collection_note (
    id bigserial PRIMARY KEY,
    collection_id bigint NOT NULL
        CONSTRAINT collection_note_collection_id_fk REFERENCES collection (id)
        ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    note text NOT NULL,
    data jsonb NOT NULL DEFAULT '{}'::jsonb,
    stored_at timestamp with time zone NOT NULL DEFAULT now(),
    -- INFO, ERROR or WARNING, or '' when unset.
    code text NOT NULL DEFAULT ''
);

CREATE INDEX collection_note_collection_id_idx ON collection_note (collection_id);
