# The two commands a newcomer needs: `make dev` (the local stack) and `make test` (everything).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv on PATH, else the copy pip installs (run as a module, wherever pip put it)
UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
RUN := $(UV) run --frozen
DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
DEVSTACK_PORT ?= 54321
BRIDGE_PORT ?= 8000

.PHONY: help install services browser db dev test lint type pytest bench fmt

help:
	@echo "make dev   - start Postgres, Redis, the Supabase stand-in and the bridge (local stack)"
	@echo "make test  - lint, type-check and run every test against real Postgres and Redis"

# The npm packages of the inbox page and of the frontend-client tests, installed again only when
# their lock changed (npm ci starts from scratch: seconds on every `make dev` otherwise).
NPM_INSTALLED := tests/js/node_modules/.package-lock.json devstack/inbox/node_modules/.package-lock.json

install: $(NPM_INSTALLED)
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen --all-extras

%/node_modules/.package-lock.json: %/package-lock.json
	@if command -v npm >/dev/null; then cd $* && npm ci --silent --no-audit --no-fund; fi

services:
	bash scripts/services.sh

browser:
	bash scripts/browser.sh

db: install services
	$(RUN) bridge db apply --database-url "$(DATABASE_URL)" --seed

dev: db
	UV="$(UV)" bash scripts/dev.sh

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) lint-imports --no-cache

type: install
	$(RUN) mypy

pytest: install services browser
	$(RUN) pytest

test: lint type pytest

fmt: install
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

bench: install services
	$(RUN) python -m bench
