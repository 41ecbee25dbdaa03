-- Kingfisher Process v1 (SQLAlchemy and alembic, up to 2021): the tables this project reads.
--
-- The columns, types and nullability are v1's own as its alembic migrations left them. The DEFAULT clauses are the
-- harness's addition: v1 filled these columns in Python (SQLAlchemy `default=`), so its database has no server
-- defaults; here they only spare test fixtures from spelling out columns no query of ours reads.

CREATE TABLE collection (
    id serial PRIMARY KEY,
    source_id text NOT NULL,
    data_version timestamp without time zone NOT NULL,
    store_start_at timestamp without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    store_end_at timestamp without time zone NULL,
    sample boolean NOT NULL DEFAULT false,
    check_data boolean NOT NULL DEFAULT false,
    check_older_data_with_schema_version_1_1 boolean NOT NULL DEFAULT false,
    -- v1 never set a foreign-key action, so a parent cannot be deleted before its transforms.
    transform_from_collection_id integer NULL REFERENCES collection (id),
    -- Nullable in v1; an original collection has '' (the unique index below covers only those).
    transform_type text NULL DEFAULT '',
    deleted_at timestamp without time zone NULL,
    cached_releases_count integer NULL,
    cached_records_count integer NULL,
    cached_compiled_releases_count integer NULL
);

-- One original collection per source, crawl time and scope; transforms share their parent's identifiers.
CREATE UNIQUE INDEX unique_collection_identifiers ON collection (source_id, data_version, sample)
    WHERE transform_type = '';

-- As alembic revision b66e30eb6816 created it (the constraint name is v1's own, copied from collection_file).
CREATE TABLE collection_note (
    id serial PRIMARY KEY,
    collection_id integer NOT NULL CONSTRAINT fk_collection_file_collection_id REFERENCES collection (id),
    note text NOT NULL,
    stored_at timestamp without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
