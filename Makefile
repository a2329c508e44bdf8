# Driftless — build, test and run everything from a fresh clone.
#
# `make test` builds the test environment's binaries (once), then runs every
# module's tests against real components. `make help` lists the targets.

SHELL        := /bin/bash
.SHELLFLAGS  := -eu -o pipefail -c
ROOT         := $(CURDIR)
TOOLS_BIN    := $(ROOT)/.tools/bin
ENV_DIR      := $(ROOT)/.tools/env
BIN          := $(ROOT)/bin
MODULES      := shared automator synchronizer e2e
PROGRAMS     := automator synchronizer
KUBE_VERSION := v1.36.3
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO_TEST_FLAGS ?= -race -count=1 -timeout 40m
# Each module must build and test on its own (a missing require would hide
# behind workspace mode), so tests and vet run with the workspace off.
GO_ALONE     := GOWORK=off

KUBE_BINS    := etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy
TOOL_FILES   := $(addprefix $(TOOLS_BIN)/,$(KUBE_BINS) kwok kwok-stages.yaml registry pause)
# The real node's runtime comes from Debian: containerd, runc (not crun:
# it refuses the hybrid cgroup hierarchy), the CNI plugins, iptables for
# kube-proxy, and the CA bundle the images carry.
DEB_PACKAGES := git containerd runc containernetworking-plugins iptables ca-certificates
REVISION     ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# The commit's time, so the same commit always builds the same images.
CREATED      ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
REGISTRY     ?=
PLATFORMS    ?= linux/amd64,linux/arm64
IMAGES_DIR   := $(BIN)/images
RELEASE_DIR  := $(BIN)/release
OVERLAYS     := dev prod tenant eks

.PHONY: help tools packages build test e2e lint bench env-up env-down demo demo-down clean images release

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

## ---- tools: the real components tests run against, built from Go modules

tools: packages $(TOOL_FILES) ## build etcd, the Kubernetes control plane and node, kwok and the registry into .tools/bin (idempotent)

packages: ## install the Debian packages the tests need (git, containerd, runc, CNI plugins, iptables), when absent
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	  if [ -n "$$missing" ]; then echo "installing Debian packages:" $$missing; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi
	@test -x "$$(git --exec-path)/git-http-backend" || { echo "git-http-backend missing: install Debian's git package"; exit 1; }
	@# containerd is run by the test environment itself, never as a system service.
	@if systemctl is-enabled containerd >/dev/null 2>&1; then systemctl disable --now containerd >/dev/null 2>&1 || true; fi

# One go build for the control plane, so shared packages compile once.
$(addprefix $(TOOLS_BIN)/,$(KUBE_BINS)) &: tools/kube/go.mod tools/kube/go.sum
	@mkdir -p $(TOOLS_BIN)
	@echo "building the Kubernetes $(KUBE_VERSION) control plane and etcd (cold: about 15 min)"
	cd tools/kube && $(GO_ALONE) go build -trimpath -o $(TOOLS_BIN)/etcd go.etcd.io/etcd/server/v3
	cd tools/kube && $(GO_ALONE) go build -trimpath \
	  -ldflags "-X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36" \
	  -o $(TOOLS_BIN)/ k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
	  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
	  k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
	@touch $(addprefix $(TOOLS_BIN)/,$(KUBE_BINS))

$(TOOLS_BIN)/kwok: tools/kwok/go.mod tools/kwok/go.sum
	@mkdir -p $(TOOLS_BIN)
	cd tools/kwok && $(GO_ALONE) go build -trimpath -o $@ sigs.k8s.io/kwok/cmd/kwok

# kwok exits with "no stages found" without stage configs; they ship in its module.
$(TOOLS_BIN)/kwok-stages.yaml: tools/kwok/go.mod tools/kwok/go.sum
	@mkdir -p $(TOOLS_BIN)
	cd tools/kwok && $(GO_ALONE) go mod download sigs.k8s.io/kwok && d=$$($(GO_ALONE) go list -m -f '{{.Dir}}' sigs.k8s.io/kwok) && \
	  for f in $$d/kustomize/stage/node/fast/node-initialize.yaml $$d/kustomize/stage/node/heartbeat/node-heartbeat.yaml \
	           $$d/kustomize/stage/pod/fast/pod-ready.yaml $$d/kustomize/stage/pod/fast/pod-complete.yaml \
	           $$d/kustomize/stage/pod/fast/pod-delete.yaml; do echo '---'; cat $$f; done > $@.tmp && mv $@.tmp $@

$(TOOLS_BIN)/registry: tools/registry/go.mod tools/registry/go.sum
	@mkdir -p $(TOOLS_BIN)
	cd tools/registry && $(GO_ALONE) go build -trimpath -o $@ github.com/distribution/distribution/v3/cmd/registry

# The real node's sandbox program; testenv makes its image (no registry.k8s.io here).
$(TOOLS_BIN)/pause: shared/cmd/pause/main.go
	@mkdir -p $(TOOLS_BIN)
	cd shared && CGO_ENABLED=0 $(GO_ALONE) go build -trimpath -o $@ ./cmd/pause

## ---- build, test, lint

build: ## build the two programs into bin/
	@mkdir -p $(BIN)
	@for p in $(PROGRAMS); do \
	  (cd $$p && $(GO_ALONE) go build -trimpath -ldflags "-X driftless.dev/shared/version.Version=$(VERSION)" -o $(BIN)/$$p ./cmd/$$p); \
	done
	@echo "built $(addprefix bin/,$(PROGRAMS)) ($(VERSION))"

test: tools ## run every module's tests (unit, integration, e2e) with -race against real components
	@for m in $(MODULES); do \
	  echo "=== go test $$m"; \
	  (cd $$m && $(GO_ALONE) go test $(GO_TEST_FLAGS) ./...) || exit 1; \
	done

e2e: tools ## run only the end-to-end tests (the real binaries, the whole loop)
	cd e2e && $(GO_ALONE) go test $(GO_TEST_FLAGS) ./...

# staticcheck is pinned in tools/lint (outside the workspace).
$(TOOLS_BIN)/staticcheck: tools/lint/go.mod tools/lint/go.sum
	@mkdir -p $(TOOLS_BIN)
	cd tools/lint && $(GO_ALONE) go build -o $@ honnef.co/go/tools/cmd/staticcheck

lint: $(TOOLS_BIN)/staticcheck ## gofmt, go vet and staticcheck on every module
	@out=$$(git ls-files '*.go' | grep -v /testdata/ | xargs gofmt -l); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@for m in $(MODULES); do (cd $$m && $(GO_ALONE) go vet ./... && $(TOOLS_BIN)/staticcheck ./...) || exit 1; done
	@echo "lint ok"

# Every benchmark of every module, three iterations each (their figures
# are medians), the raw output kept in bin/bench/<module>.txt; then one
# table of the scale cases against the floors measured in the same run,
# the growth curves, and docs/scale.svg. About 25 min on 2 cores;
# BENCH_SCALE=full runs the issue's sizes (10,000 objects, 1,000
# repositories × 1,000 tags, a 100 MB history): about 60 min.
# BENCH=<regexp> runs only the benchmarks it matches.
BENCH       ?= .
BENCH_TIME  ?= 3x
BENCH_SCALE ?=
bench: tools ## run every benchmark and print one table of the scale cases against their floors, the growth curves and docs/scale.svg (BENCH_SCALE=full: the issue's sizes)
	@mkdir -p $(BIN)/bench
	@failed=; for m in $(MODULES); do \
	  echo "go test -bench '$(BENCH)' in $$m: output in bin/bench/$$m.txt"; \
	  (cd $$m && BENCH_SCALE=$(BENCH_SCALE) $(GO_ALONE) go test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCH_TIME) -benchmem -timeout 180m ./...) \
	    > $(BIN)/bench/$$m.txt 2>&1 || { tail -60 $(BIN)/bench/$$m.txt; failed="$$failed $$m"; }; \
	done; echo; \
	cd e2e && $(GO_ALONE) go run ./cmd/benchreport --svg $(ROOT)/docs/scale.svg $(addprefix $(BIN)/bench/,$(addsuffix .txt,$(MODULES))); \
	if [ -n "$$failed" ]; then echo "benchmarks failed in:$$failed"; exit 1; fi

## ---- images and release

images: ## build both images (static, amd64 + arm64, reproducible) into bin/images; REGISTRY=<registry>/<path> also pushes them and prints the digests
	@mkdir -p $(BIN)
	@cd automator && $(GO_ALONE) go build -o $(BIN)/driftless-images ./cmd/images
	$(BIN)/driftless-images --root $(ROOT) --out $(IMAGES_DIR) --version $(VERSION) --revision $(REVISION) --created $(CREATED) \
	  --platforms $(PLATFORMS) $(if $(REGISTRY),--registry $(REGISTRY)) $(IMAGES_FLAGS)

release: build ## REGISTRY=<registry>/<path>: push the images and write bin/release/<overlay>/install.yaml with them pinned by digest
	@test -n "$(REGISTRY)" || { echo "make release needs REGISTRY=<registry>/<path>, e.g. 111122223333.dkr.ecr.eu-west-1.amazonaws.com/driftless"; exit 1; }
	@rm -rf $(RELEASE_DIR)
	@$(MAKE) --no-print-directory images IMAGES_FLAGS="--release $(RELEASE_DIR) $(IMAGES_FLAGS)"
	@for o in $(OVERLAYS); do \
	  $(BIN)/synchronizer build --dir $(ROOT) --path bin/release/$$o > $(RELEASE_DIR)/$$o/install.yaml.tmp && \
	  mv $(RELEASE_DIR)/$$o/install.yaml.tmp $(RELEASE_DIR)/$$o/install.yaml && echo "wrote bin/release/$$o/install.yaml"; \
	done

## ---- a test environment for a person

env-up: tools ## start a cluster, a registry and a Git server in the background and print how to reach them (ENV_FLAGS=--real-node adds a real node)
	@if [ -f $(ENV_DIR)/pid ] && kill -0 $$(cat $(ENV_DIR)/pid) 2>/dev/null; then \
	  echo "already running:"; cat $(ENV_DIR)/env.sh; exit 0; fi
	@rm -rf $(ENV_DIR) && mkdir -p $(ENV_DIR)
	@cd shared && $(GO_ALONE) go build -o $(TOOLS_BIN)/driftless-testenv ./cmd/testenv
	@nohup $(TOOLS_BIN)/driftless-testenv up --dir $(ENV_DIR) --bin-dir $(TOOLS_BIN) $(ENV_FLAGS) > $(ENV_DIR)/testenv.log 2>&1 & echo $$! > $(ENV_DIR)/pid
	@$(TOOLS_BIN)/driftless-testenv wait --dir $(ENV_DIR)

env-down: ## stop the environment env-up started and remove its files (and what killed real nodes left: containers, mounts, bridges, iptables rules)
	@if [ -f $(ENV_DIR)/pid ]; then \
	  pid=$$(cat $(ENV_DIR)/pid); kill $$pid 2>/dev/null || true; \
	  for i in $$(seq 1 150); do kill -0 $$pid 2>/dev/null || break; sleep 0.2; done; \
	  kill -9 $$pid 2>/dev/null || true; fi
	@if [ -x $(TOOLS_BIN)/driftless-testenv ]; then $(TOOLS_BIN)/driftless-testenv cleanup; fi
	@rm -rf $(ENV_DIR)
	@echo "environment stopped"

## ---- the product, end to end

DEMO_DIR     := $(ROOT)/.tools/demo

demo: tools build demo-down ## bring everything up, the programs in Pods, and show the loop, the records, a gated promotion and the UIs (leaves it running; make demo-down stops it; DEMO_FLAGS=--processes runs the programs as local processes)
	@mkdir -p $(DEMO_DIR)
	@cd e2e && $(GO_ALONE) go build -o $(BIN)/demo ./cmd/demo
	@nohup $(BIN)/demo up --dir $(DEMO_DIR) --bin-dir $(TOOLS_BIN) --automator $(BIN)/automator \
	  --synchronizer $(BIN)/synchronizer --manifests $(ROOT)/manifests $(DEMO_FLAGS) > $(DEMO_DIR)/demo.log 2>&1 & echo $$! > $(DEMO_DIR)/pid
	@$(BIN)/demo follow --dir $(DEMO_DIR)

# Stopping the real nodes takes about 10 s; a demo killed before that
# leaves containers and mounts, which cleanup removes (only those of nodes
# no live process holds).
demo-down: ## stop what demo started and remove its files
	@if [ -f $(DEMO_DIR)/pid ]; then \
	  pid=$$(cat $(DEMO_DIR)/pid); kill $$pid 2>/dev/null || true; \
	  for i in $$(seq 1 300); do kill -0 $$pid 2>/dev/null || break; sleep 0.2; done; \
	  if kill -9 $$pid 2>/dev/null && [ -x $(TOOLS_BIN)/driftless-testenv ]; then $(TOOLS_BIN)/driftless-testenv cleanup; fi; \
	  echo "demo stopped"; fi
	@rm -rf $(DEMO_DIR)

clean: env-down ## remove built programs (keeps .tools; remove it by hand to rebuild the tools)
	rm -rf $(BIN)

## ---- the web UI: a browser for its tests, and its screenshots

.PHONY: browser screenshots

# A prerequisite added to tools here, so the lines above stay as they are.
tools: browser

browser: ## install Debian's chromium (the UI's browser tests drive it headless), when absent
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@test -x /usr/bin/chromium || { echo "chromium missing: install Debian's chromium package"; exit 1; }

screenshots: tools ## regenerate docs/screenshots (the synchronizer's overview, objects, diff; the automator's policies, policy, fleet) with the browser tests
	@mkdir -p $(ROOT)/docs/screenshots
	cd e2e && DRIFTLESS_SCREENSHOTS=$(ROOT)/docs/screenshots $(GO_ALONE) go test -count=1 -run '^(TestUIInABrowser|TestAutomatorUIInABrowser)$$' .

## ---- reliability you can quote: kills, faults, bad input, fuzzing, secrets (docs: README, Reliability)

.PHONY: reliability fuzz

# make test runs the short form of the suite (3 kills a program, each fault
# once); make reliability the full one, with a seed that replays it.
SEED              ?= $(shell date +%s)
RELIABILITY_KILLS ?= 24
RELIABILITY_TESTS := ^(TestBadInput|TestReliability|TestSecretsNeverLeak|Test[A-Za-z]*RecoversFromAKill|Fuzz)
FUZZTIME          ?= 1m
FUZZ_TARGETS      := automator/internal/policy:FuzzParse automator/internal/policy:FuzzSelect \
                     automator/internal/update:FuzzParseMarker automator/internal/update:FuzzEdit \
                     automator/internal/hook:FuzzParse automator/internal/hook:FuzzRegistryWebhook \
                     synchronizer/internal/hook:FuzzWebhook \
                     synchronizer/internal/build:FuzzKustomization synchronizer/internal/build:FuzzPlainFolder

reliability: tools ## kill -9 at random points (RELIABILITY_KILLS a program), faults, the bad-input census, fuzz seeds and the secrets canary: one table; SEED=<n> replays
	@echo "seed $(SEED), $(RELIABILITY_KILLS) kills a program"
	@for m in $(MODULES); do \
	  (cd $$m && DRIFTLESS_SEED=$(SEED) DRIFTLESS_KILLS=$(RELIABILITY_KILLS) $(GO_ALONE) go test -json -race -count=1 -timeout 90m \
	    -run '$(RELIABILITY_TESTS)' ./...) || true; \
	done | (cd e2e && $(GO_ALONE) go run ./cmd/reliability --seed $(SEED))

fuzz: ## run every fuzz target for FUZZTIME (default 1m) each: no panic, no edit outside a marked value
	@for t in $(FUZZ_TARGETS); do \
	  dir=$${t%%:*}; target=$${t#*:}; module=$${dir%%/*}; pkg=./$${dir#*/}; \
	  echo "=== fuzz $$dir $$target for $(FUZZTIME)"; \
	  (cd $$module && $(GO_ALONE) go test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg) || exit 1; \
	done
