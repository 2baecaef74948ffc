# Quickstart: `make run` (set up, then run the agent with a demo config)
# and `make test` (set up, install the programs the tests use, run them).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck bench test-deps deb-deps deb clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The demo: a hub and an agent pushing to it, both on loopback, state in
# ./run. Prints one collection, then runs both until Ctrl-C. While it runs:
#   curl -s localhost:8650/v1/hosts        the hub's view of the fleet
#   curl -s localhost:8651/metrics         the agent's own endpoint
#   .venv/bin/vigil status --config packaging/demo.toml
run: $(STAMP)
	@mkdir -p run
	$(BIN)/vigil hub token demo --config packaging/hub-demo.toml > run/token
	$(BIN)/vigil hub token demo-web --config packaging/hub-demo.toml > run/token-web
	$(BIN)/vigil hub token demo-db --config packaging/hub-demo.toml > run/token-db
	$(BIN)/vigil once --config packaging/demo.toml
	@echo
	@echo "== hub on 127.0.0.1:8650 with a fleet of three agents: demo, demo-web, demo-db"
	@echo "== the fleet's web page: http://127.0.0.1:8650/ (open on this machine, no token)"
	@echo "== the fleet: $(BIN)/vigil hub hosts --config packaging/hub-demo.toml"
	@echo "== (or curl -s localhost:8650/v1/hosts); agent endpoint on 127.0.0.1:8651"
	@echo "== status: $(BIN)/vigil status --config packaging/demo.toml"
	@$(BIN)/vigil hub run --config packaging/hub-demo.toml & hub=$$!; \
	$(BIN)/vigil run --config packaging/demo-web.toml >run/demo-web.log 2>&1 & web=$$!; \
	$(BIN)/vigil run --config packaging/demo-db.toml >run/demo-db.log 2>&1 & db=$$!; \
	trap 'kill $$web $$db $$hub 2>/dev/null; wait $$web $$db $$hub 2>/dev/null' EXIT INT TERM; \
	$(BIN)/vigil run --config packaging/demo.toml

# $(call apt_install,WHY): the shell's $$missing Debian packages, installed
# when we are root and have apt-get, else WHY is printed. Ends a recipe line.
apt_install = if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing from Debian:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else \
			echo "not root or no apt-get: $(1)"; \
		fi; \
	fi

# Programs the tests drive for real, from Debian's packages: promtool
# (package prometheus), systemd-analyze (package systemd), logrotate,
# Alertmanager (package prometheus-alertmanager), nginx (nginx-light), the
# Nagios plugins (monitoring-plugins-basic) and systemd-journal-remote
# (which, with systemd's journalctl, makes and reads journal files for the
# [[journal]] tests; no systemd as PID 1 needed), PostgreSQL 15 (package
# postgresql: the store suite and the two-hub tests start their own server
# in a temporary directory), node_exporter (prometheus-node-exporter: the
# [[scrape]] tests run their own on a free port). Installed only
# when missing and when we are root; otherwise those tests skip and say why.
test-deps: deb-deps
	@missing=""; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	command -v logrotate >/dev/null 2>&1 || missing="$$missing logrotate"; \
	test -x /usr/bin/prometheus-alertmanager || missing="$$missing prometheus-alertmanager"; \
	command -v nginx >/dev/null 2>&1 || missing="$$missing nginx-light"; \
	test -x /usr/lib/nagios/plugins/check_tcp || missing="$$missing monitoring-plugins-basic"; \
	test -x /lib/systemd/systemd-journal-remote || missing="$$missing systemd-journal-remote"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	test -x /usr/bin/victoria-metrics || missing="$$missing victoria-metrics"; \
	test -x /usr/lib/postgresql/15/bin/initdb || missing="$$missing postgresql"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	test -x /usr/bin/prometheus-node-exporter || missing="$$missing prometheus-node-exporter"; \
	$(call apt_install,tests needing$$missing will skip)

# The Debian package: dist/vigil_VERSION_ARCH.deb, built with debhelper and
# dh-virtualenv from packaging/debian/ in a copy under dist/debbuild/, then
# checked by lintian (no errors allowed). DEB_VERSION overrides the
# version (a newer changelog entry in the copy only; the tests build an
# upgrade that way); LINTIAN=0 skips lintian (it takes most of the two
# minutes). The wheels come from PyPI at build time; pip's cache
# stays in dist/.
DEB_VERSION ?= $(shell dpkg-parsechangelog -l packaging/debian/changelog -S Version 2>/dev/null)
DEB_ARCH    := $(shell dpkg --print-architecture 2>/dev/null)
DEB_TREE    := dist/debbuild/vigil-$(DEB_VERSION)

deb-deps:
	@missing=""; \
	for p in debhelper dh-virtualenv lintian python3-venv; do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	$(call apt_install,make deb needs$$missing)

deb: deb-deps
	rm -rf dist/debbuild && mkdir -p $(DEB_TREE)/conf dist
	tar -cf - --exclude=__pycache__ agent collectors hub systemd pyproject.toml README.md \
		| tar -xf - -C $(DEB_TREE)
	cp -r packaging/debian $(DEB_TREE)/debian
	cp systemd/vigil.sysusers.conf $(DEB_TREE)/debian/vigil.sysusers
	cp systemd/vigil.tmpfiles.conf $(DEB_TREE)/debian/vigil.tmpfiles
	cp packaging/agent.example.toml $(DEB_TREE)/conf/agent.toml
	cp packaging/hub.example.toml $(DEB_TREE)/conf/hub.toml
	@if [ "$(DEB_VERSION)" != "$$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)" ]; then \
		{ printf 'vigil (%s) unstable; urgency=medium\n\n  * Built with DEB_VERSION=%s.\n\n -- %s  %s\n\n' \
			"$(DEB_VERSION)" "$(DEB_VERSION)" \
			"$$(dpkg-parsechangelog -l packaging/debian/changelog -S Maintainer)" "$$(date -R)"; \
		  cat packaging/debian/changelog; } > $(DEB_TREE)/debian/changelog; \
	fi
	cd $(DEB_TREE) && PIP_CACHE_DIR=$(CURDIR)/dist/pip-cache dpkg-buildpackage -b -us -uc
	mv dist/debbuild/vigil_$(DEB_VERSION)_$(DEB_ARCH).deb dist/
	@if [ "$(LINTIAN)" != 0 ]; then \
		echo "lintian dist/vigil_$(DEB_VERSION)_$(DEB_ARCH).deb"; \
		lintian --fail-on error --info dist/vigil_$(DEB_VERSION)_$(DEB_ARCH).deb; \
	fi
	@ls -l dist/vigil_$(DEB_VERSION)_$(DEB_ARCH).deb

test: $(STAMP) test-deps
	$(BIN)/ruff check agent collectors hub tests bench
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check agent collectors hub tests bench
	$(BIN)/ruff format --check agent collectors hub tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Benchmarks print figures; they are not tests. collectd, nginx and
# blackbox_exporter, their references, come from Debian.
# bench.hub_ingest (docs/scaling.md): 2,000, 5,000 and 10,000 simulated
# agents on one SQLite hub, and 10,000 with forwarding into VictoriaMetrics
# (about 7 minutes). Two hubs on PostgreSQL are opt-in, they need
# `make test-deps`: make bench HUB_INGEST="--runs sqlite,postgres,forward";
# a profile of the hub at 10,000 agents: HUB_INGEST="--runs sqlite --profile".
# The one-hour soak is not here: `$(BIN)/python -m bench.soak` (needs nginx
# and logrotate, as `make test-deps` installs them).
HUB_INGEST ?= --runs sqlite,forward
bench: $(STAMP)
	@missing=""; \
	command -v collectd >/dev/null 2>&1 || missing="$$missing collectd-core"; \
	command -v nginx >/dev/null 2>&1 || missing="$$missing nginx-light"; \
	command -v prometheus-blackbox-exporter >/dev/null 2>&1 || missing="$$missing prometheus-blackbox-exporter"; \
	test -x /usr/bin/victoria-metrics || missing="$$missing victoria-metrics"; \
	$(call apt_install,the benchmarks needing$$missing will fail)
	$(BIN)/python -m bench.host_metrics
	$(BIN)/python -m bench.startup
	$(BIN)/python -m bench.buffer
	$(BIN)/python -m bench.hub_ingest $(HUB_INGEST)
	$(BIN)/python -m bench.hub_conn
	$(BIN)/python -m bench.hub_hostile
	$(BIN)/python -m bench.hub_reads
	$(BIN)/python -m bench.hub_fleet
	$(BIN)/python -m bench.hub_report
	$(BIN)/python -m bench.hub_web
	$(BIN)/python -m bench.hub_forward
	$(BIN)/python -m bench.footprint
	$(BIN)/python -m bench.logs
	$(BIN)/python -m bench.alerts
	$(BIN)/python -m bench.checks
	$(BIN)/python -m bench.checks --interval 1 --seconds 20 --runs 5

clean:
	rm -rf $(VENV) run dist .pytest_cache .mypy_cache .ruff_cache
