# Keyway: `make run` starts the portal, `make test` runs every test.
# Both install what they need on Debian 12 (run as root) when it is missing.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
export DEBIAN_FRONTEND := noninteractive

GO      ?= go
DATA    ?= ./data
LISTEN  ?= :8443
# The demo prints its passwords, so it listens on 127.0.0.1:8443 unless
# told otherwise (make demo DEMO_LISTEN=:8443); LISTEN is not for it.
DEMO_LISTEN ?=

# Debian packages: what the portal needs to build and run, and what the
# tests add (real servers, a real browser, and ffmpeg, which the portal
# uses for video exports of desktop recordings when it is installed).
# RDP goes through FreeRDP 2 (cgo), so building needs its headers.
DEBS_RUN  := gcc libc6-dev pkg-config freerdp2-dev openssh-server openssh-client
# The demo's desktop targets: Xvnc with an xterm, and freerdp-shadow-cli
# (NLA against a SAM file made by winpr-hash) on Xvfb.
DEBS_DEMO := $(DEBS_RUN) tigervnc-standalone-server tigervnc-tools xterm x11-xserver-utils fonts-dejavu-core \
	freerdp2-shadow-x11 winpr-utils xvfb
# Dropbear (with OpenSSH's sftp-server for its SFTP) is the second SSH server
# every SSH feature is tested against. The native client's tests and
# benchmark use PostgreSQL with psql, iperf3, xfreerdp and curl through it.
DEBS_TEST := $(DEBS_DEMO) sqlite3 slapd ldap-utils dropbear-bin openssh-sftp-server sshpass chromium procps iproute2 x11-utils x11-apps xclip x11vnc xrdp xorgxrdp ffmpeg \
	postgresql postgresql-client iperf3 freerdp2-x11 curl

.PHONY: run demo test build assets generate lint unit unit-postgres-all e2e bench bench-tunnel bench-replicas deps-run deps-demo deps-test check-go clean

run: build
	./bin/portal serve --data $(DATA) --listen $(LISTEN)

demo: deps-demo build
	./bin/portal demo $(if $(DEMO_LISTEN),--listen $(DEMO_LISTEN))

test: deps-test assets lint unit e2e

build: deps-run assets
	$(GO) build -o bin/portal ./cmd/portal
	$(GO) build -o bin/gateway ./cmd/gateway
	$(MAKE) --no-print-directory clients

# The native client (keyway), pure Go, for the systems the portal's Account
# page offers; the portal serves bin/clients (portal serve --clients).
CLIENT_TARGETS := linux/amd64 linux/arm64 darwin/arm64 windows/amd64
CLIENT_VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

.PHONY: clients
clients:
	@mkdir -p bin/clients
	@for t in $(CLIENT_TARGETS); do \
	  os=$${t%/*}; arch=$${t#*/}; ext=; [ $$os = windows ] && ext=.exe; \
	  echo "go build keyway for $$os/$$arch"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "-X main.version=$(CLIENT_VERSION)" \
	    -o bin/clients/keyway-$$os-$$arch$$ext ./cmd/keyway || exit 1; \
	done

# Installs the Debian packages in $(1) that are not installed yet.
define apt_install
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

check-go:
	@command -v $(GO) >/dev/null || { echo "Go 1.26 or newer is needed: install it to /usr/local/go (https://go.dev/doc/install)"; exit 1; }

deps-run: check-go
	$(call apt_install,$(DEBS_RUN))
	@# Node.js may come from another package source than Debian's (whose npm
	@# would conflict with it): install Debian's only when there is none.
	@command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }
	@$(MAKE) --no-print-directory node_modules/.installed

deps-demo: deps-run
	$(call apt_install,$(DEBS_DEMO))

deps-test: deps-run
	$(call apt_install,$(DEBS_TEST))

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

assets: node_modules/.installed
	npm run --silent build

generate:
	$(GO) tool templ generate -path web/ui

lint: assets
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null || true); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@before=$$(cat web/ui/*_templ.go | sha256sum); \
	  $(GO) tool templ generate -path web/ui >/dev/null 2>&1; \
	  if [ "$$before" != "$$(cat web/ui/*_templ.go | sha256sum)" ]; then \
	    echo "web/ui: the generated *_templ.go files were stale; they are regenerated now, commit them"; exit 1; fi
	npx tsc --noEmit -p web

# -timeout: a package's tests take 3 minutes on an idle 2-core machine
# (cmd/portal, under -race) and went past go test's default 10 on one
# loaded by other jobs; a real hang still fails, within the CI budget.
# The packages whose tests open stores run a second time on PostgreSQL
# (portal/store's own tests run on both in the pass above); portal/httpui
# too with `make unit-postgres-all` (11 minutes under -race on a loaded
# 2-core machine, so not on every run).
STORE_USERS = ./portal/auth/ ./portal/policy/ ./portal/retention/ ./portal/sessions/

unit: assets bin/versitygw
	$(GO) test -race -count=1 -timeout 30m ./...
	KEYWAY_TEST_DATABASE=postgres $(GO) test -race -count=1 -timeout 30m $(STORE_USERS)
	node --test web/test/

unit-postgres-all: assets
	KEYWAY_TEST_DATABASE=postgres $(GO) test -race -count=1 -timeout 30m $(STORE_USERS) ./portal/httpui/

# The S3-compatible server the recording storage tests use (versitygw with
# its posix backend), from its own module in e2e/s3server so its
# dependencies stay out of the portal's; rebuilt only when that module
# changes (about 2.5 minutes the first time on a busy 2-core machine).
bin/versitygw: e2e/s3server/go.mod e2e/s3server/go.sum
	cd e2e/s3server && $(GO) build -o ../../bin/versitygw github.com/versity/versitygw/cmd/versitygw

e2e: build
	npm run --silent e2e

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 5x ./e2e/bench/...
	node e2e/bench/desktop.bench.mjs
	node e2e/bench/rdp.bench.mjs
	node e2e/bench/recording.bench.mjs

# The native client against direct paths and a ceiling (HTTP/2 CONNECT with
# no portal logic): iperf3, echo round trips, memory per idle stream in
# client, portal and a separate gateway (docs/benchmarks.md).
bench-tunnel: deps-test build
	$(GO) test -run '^$$' -bench NativeTunnel -benchtime 1x -timeout 30m -v ./e2e/bench/

# Terminal connect and sign-in on SQLite beside PostgreSQL, and 1,000 idle
# terminals on one replica and on two on one PostgreSQL (docs/benchmarks.md).
bench-replicas: deps-test build
	$(GO) test -run '^$$' -bench 'DatabaseConnectSignIn|IdleSessionsReplicas' -benchtime 1x -timeout 30m -v ./e2e/bench/

clean:
	rm -rf bin web/assets/dist/*.js web/assets/dist/*.css web/assets/dist/*.map
