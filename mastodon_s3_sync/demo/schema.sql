-- The seven Mastodon tables that reference media in object storage, with
-- Mastodon 4.3's real column names, types, NOT NULL constraints and defaults
-- (db/schema.rb). Only the columns the sync reads plus a few realistic others;
-- no foreign keys (the demo and the tests insert rows in any order).
--
-- Rails types: t.string -> character varying, t.datetime precision: nil ->
-- timestamp without time zone, t.datetime (Rails 7 default) -> timestamp(6).
-- Run on a fresh database.

-- accounts and media_attachments ids default to a snowflake in Mastodon
-- (timestamp_id(): unix milliseconds << 16 | a sequence); this is a simplified
-- version of it, so rows inserted without an id get an 18-digit id.
CREATE SEQUENCE accounts_id_seq;
CREATE SEQUENCE media_attachments_id_seq;

CREATE TABLE accounts (
    id bigint NOT NULL DEFAULT (((floor(extract(epoch FROM clock_timestamp()) * 1000))::bigint << 16)
                                | (nextval('accounts_id_seq') % 65536)),
    username character varying DEFAULT '' NOT NULL,
    domain character varying,
    private_key text,
    public_key text DEFAULT '' NOT NULL,
    created_at timestamp without time zone NOT NULL,
    updated_at timestamp without time zone NOT NULL,
    note text DEFAULT '' NOT NULL,
    display_name character varying DEFAULT '' NOT NULL,
    uri character varying DEFAULT '' NOT NULL,
    url character varying,
    avatar_file_name character varying,
    avatar_content_type character varying,
    avatar_file_size integer,
    avatar_updated_at timestamp without time zone,
    header_file_name character varying,
    header_content_type character varying,
    header_file_size integer,
    header_updated_at timestamp without time zone,
    avatar_remote_url character varying,
    locked boolean DEFAULT false NOT NULL,
    header_remote_url character varying DEFAULT '' NOT NULL,
    last_webfingered_at timestamp without time zone,
    inbox_url character varying DEFAULT '' NOT NULL,
    outbox_url character varying DEFAULT '' NOT NULL,
    shared_inbox_url character varying DEFAULT '' NOT NULL,
    followers_url character varying DEFAULT '' NOT NULL,
    protocol integer DEFAULT 0 NOT NULL,
    memorial boolean DEFAULT false NOT NULL,
    moved_to_account_id bigint,
    featured_collection_url character varying,
    fields jsonb,
    actor_type character varying,
    discoverable boolean,
    also_known_as character varying[],
    silenced_at timestamp without time zone,
    suspended_at timestamp without time zone,
    hide_collections boolean,
    avatar_storage_schema_version integer,
    header_storage_schema_version integer,
    sensitized_at timestamp without time zone,
    suspension_origin integer,
    trendable boolean,
    reviewed_at timestamp without time zone,
    requested_review_at timestamp without time zone,
    indexable boolean DEFAULT false NOT NULL,
    attribution_domains character varying[] DEFAULT '{}',
    CONSTRAINT accounts_pkey PRIMARY KEY (id)
);
CREATE UNIQUE INDEX index_accounts_on_username_and_domain_lower
    ON accounts (lower((username)::text), COALESCE(lower((domain)::text), ''::text));
CREATE INDEX index_accounts_on_domain_and_id ON accounts (domain, id);
CREATE INDEX index_accounts_on_uri ON accounts (uri);

CREATE TABLE media_attachments (
    id bigint NOT NULL DEFAULT (((floor(extract(epoch FROM clock_timestamp()) * 1000))::bigint << 16)
                                | (nextval('media_attachments_id_seq') % 65536)),
    status_id bigint,
    file_file_name character varying,
    file_content_type character varying,
    file_file_size integer,
    file_updated_at timestamp without time zone,
    remote_url character varying DEFAULT '' NOT NULL,
    created_at timestamp without time zone NOT NULL,
    updated_at timestamp without time zone NOT NULL,
    shortcode character varying,
    type integer DEFAULT 0 NOT NULL,
    file_meta json,
    account_id bigint,
    description text,
    scheduled_status_id bigint,
    blurhash character varying,
    processing integer,
    file_storage_schema_version integer,
    thumbnail_file_name character varying,
    thumbnail_content_type character varying,
    thumbnail_file_size integer,
    thumbnail_updated_at timestamp without time zone,
    thumbnail_remote_url character varying,
    thumbnail_storage_schema_version integer,
    CONSTRAINT media_attachments_pkey PRIMARY KEY (id)
);
CREATE INDEX index_media_attachments_on_account_id_and_status_id
    ON media_attachments (account_id, status_id DESC);
CREATE INDEX index_media_attachments_on_scheduled_status_id
    ON media_attachments (scheduled_status_id) WHERE (scheduled_status_id IS NOT NULL);
CREATE UNIQUE INDEX index_media_attachments_on_shortcode
    ON media_attachments (shortcode text_pattern_ops) WHERE (shortcode IS NOT NULL);
CREATE INDEX index_media_attachments_on_status_id ON media_attachments (status_id);

CREATE TABLE custom_emojis (
    id bigserial NOT NULL,
    shortcode character varying DEFAULT '' NOT NULL,
    domain character varying,
    image_file_name character varying,
    image_content_type character varying,
    image_file_size integer,
    image_updated_at timestamp without time zone,
    created_at timestamp without time zone NOT NULL,
    updated_at timestamp without time zone NOT NULL,
    disabled boolean DEFAULT false NOT NULL,
    uri character varying,
    image_remote_url character varying,
    visible_in_picker boolean DEFAULT true NOT NULL,
    category_id bigint,
    image_storage_schema_version integer,
    CONSTRAINT custom_emojis_pkey PRIMARY KEY (id)
);
CREATE UNIQUE INDEX index_custom_emojis_on_shortcode_and_domain ON custom_emojis (shortcode, domain);

CREATE TABLE preview_cards (
    id bigserial NOT NULL,
    url character varying DEFAULT '' NOT NULL,
    title character varying DEFAULT '' NOT NULL,
    description character varying DEFAULT '' NOT NULL,
    image_file_name character varying,
    image_content_type character varying,
    image_file_size integer,
    image_updated_at timestamp without time zone,
    type integer DEFAULT 0 NOT NULL,
    html text DEFAULT '' NOT NULL,
    author_name character varying DEFAULT '' NOT NULL,
    author_url character varying DEFAULT '' NOT NULL,
    provider_name character varying DEFAULT '' NOT NULL,
    provider_url character varying DEFAULT '' NOT NULL,
    width integer DEFAULT 0 NOT NULL,
    height integer DEFAULT 0 NOT NULL,
    created_at timestamp without time zone NOT NULL,
    updated_at timestamp without time zone NOT NULL,
    embed_url character varying DEFAULT '' NOT NULL,
    image_storage_schema_version integer,
    blurhash character varying,
    language character varying,
    max_score double precision,
    max_score_at timestamp without time zone,
    trendable boolean,
    link_type integer,
    published_at timestamp(6) without time zone,
    image_description character varying DEFAULT '' NOT NULL,
    author_account_id bigint,
    CONSTRAINT preview_cards_pkey PRIMARY KEY (id)
);
CREATE UNIQUE INDEX index_preview_cards_on_url ON preview_cards (url);

CREATE TABLE site_uploads (
    id bigserial NOT NULL,
    var character varying DEFAULT '' NOT NULL,
    file_file_name character varying,
    file_content_type character varying,
    file_file_size integer,
    file_updated_at timestamp without time zone,
    meta json,
    created_at timestamp without time zone NOT NULL,
    updated_at timestamp without time zone NOT NULL,
    blurhash character varying,
    CONSTRAINT site_uploads_pkey PRIMARY KEY (id)
);
CREATE UNIQUE INDEX index_site_uploads_on_var ON site_uploads (var);

CREATE TABLE preview_card_providers (
    id bigserial NOT NULL,
    domain character varying DEFAULT '' NOT NULL,
    icon_file_name character varying,
    icon_content_type character varying,
    icon_file_size bigint,
    icon_updated_at timestamp without time zone,
    trendable boolean,
    reviewed_at timestamp without time zone,
    requested_review_at timestamp without time zone,
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL,
    CONSTRAINT preview_card_providers_pkey PRIMARY KEY (id)
);
CREATE UNIQUE INDEX index_preview_card_providers_on_domain ON preview_card_providers (domain);

CREATE TABLE backups (
    id bigserial NOT NULL,
    user_id bigint,
    dump_file_name character varying,
    dump_content_type character varying,
    dump_updated_at timestamp without time zone,
    processed boolean DEFAULT false NOT NULL,
    created_at timestamp without time zone NOT NULL,
    updated_at timestamp without time zone NOT NULL,
    dump_file_size bigint,
    CONSTRAINT backups_pkey PRIMARY KEY (id)
);
CREATE INDEX index_backups_on_user_id ON backups (user_id);
