# igord — every target runs with the Node pinned in devDependencies (node_modules/.bin first on PATH).
SHELL := /bin/bash
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
NODE := $(CURDIR)/node_modules/.bin/node

AS_AGENTS := $(basename $(notdir $(wildcard agents-as/agents/*.ts)))
AS_WASM := $(AS_AGENTS:%=agents-as/build/%.wasm)
# Existing AS agents also built, unchanged, as components of world igor:agent/agent (wit/agent.wit).
AS_COMPONENTS := ledger heartbeat
AS_COMPONENT_WASM := $(AS_COMPONENTS:%=agents-as/build/%.component.wasm)

# C agents: WASI reactors built with Debian's clang + lld + wasi-libc (installed below when missing).
C_AGENTS := $(basename $(notdir $(wildcard agents-c/agents/*.c)))
C_WASM := $(C_AGENTS:%=agents-c/build/%.wasm)
CLANG ?= clang
# Debian's wasi-libc lives in /usr (include/wasm32-wasi, lib/wasm32-wasi), which its clang finds
# itself; a wasi-sdk style sysroot in /usr/share/wasi-sysroot is used when present.
C_FLAGS := --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Iagents-c/include -Wl,--strip-all \
  $(if $(wildcard /usr/share/wasi-sysroot),--sysroot=/usr/share/wasi-sysroot)
WASI_PACKAGES := clang lld wasi-libc libclang-rt-14-dev-wasm32

.PHONY: install agents demo demo-p2p test bench typecheck clean wasi-toolchain chromium

install: node_modules/.installed

# `npm install` (not `npm ci`): npm 11.19's `ci` refuses this lock file because it never records
# cbor-extract's optional per-platform packages; `install` keeps the locked versions and the lock.
# Run twice: first under the system Node (which installs the pinned one), then npm itself again
# under the pinned Node, because npm skips optional packages whose `engines` the running Node does
# not meet (jco's @napi-rs/lzma native binding needs Node >= 22; Debian's Node is 20).
NPM_CLI := $(realpath $(shell command -v npm))
node_modules/.installed: package.json package-lock.json
	npm install --no-audit --no-fund --loglevel=error
	$(NODE) $(NPM_CLI) install --no-audit --no-fund --loglevel=error
	@touch $@

# JavaScript agents: components built by `jco componentize` (ComponentizeJS, StarlingMonkey) against
# each agent's own world in agents-js/wit (the igor:agent package is linked in as wit/agent.wit).
# `-d all` disables every WASI feature of the engine: the component imports only igor:agent
# interfaces (docs/RATIONALE.md "JavaScript agents"). Offline after `npm install`.
JS_AGENTS := $(basename $(notdir $(wildcard agents-js/agents/*.js)))
JS_WASM := $(JS_AGENTS:%=agents-js/build/%.wasm)
JCO := $(NODE) --import ./scripts/jco-preopen.ts node_modules/@bytecodealliance/jco/dist/jco.js

agents: install $(AS_WASM) $(C_WASM) $(AS_COMPONENT_WASM) $(JS_WASM)

agents-js/build/%.wasm: agents-js/agents/%.js agents-js/agents/%.manifest.json agents-js/wit/%.wit wit/agent.wit
	@mkdir -p agents-js/build
	$(JCO) componentize $< --wit agents-js/wit -n $* -d all -o $@
	@cp agents-js/agents/$*.manifest.json agents-js/build/$*.manifest.json

agents-as/build/%.wasm: agents-as/agents/%.ts agents-as/sdk/*.ts agents-as/asconfig.json
	@mkdir -p agents-as/build
	asc $< --config agents-as/asconfig.json --target release -o $@
	@cp agents-as/agents/$*.manifest.json agents-as/build/$*.manifest.json

agents-as/build/%.component.wasm: agents-as/agents/%.ts agents-as/component/igor.ts wit/agent.wit scripts/componentize-as.ts
	$(NODE) scripts/componentize-as.ts $*

agents-c/build/%.wasm: agents-c/agents/%.c agents-c/agents/%.manifest.json agents-c/include/*.h | wasi-toolchain
	@mkdir -p agents-c/build
	$(CLANG) $(C_FLAGS) $< -o $@
	@cp agents-c/agents/$*.manifest.json agents-c/build/$*.manifest.json

# Installs clang, wasm-ld, wasi-libc and the wasm32 compiler-rt builtins with apt when any is
# missing (CI starts from a fresh Debian machine; sudo is used when not running as root).
wasi-toolchain:
	@if ! { command -v $(CLANG) && command -v wasm-ld && \
	        { test -e /usr/lib/wasm32-wasi/libc.a || test -e /usr/share/wasi-sysroot/lib/wasm32-wasi/libc.a; } && \
	        ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a; } >/dev/null 2>&1; then \
	  echo "installing the C agent toolchain: $(WASI_PACKAGES)"; \
	  sudo=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$sudo apt-get update && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y $(WASI_PACKAGES); \
	fi

# Debian's Chromium for the browser tests (test/e2e-console.test.ts drives /usr/bin/chromium with
# playwright-core; no browser is ever downloaded), installed with apt when missing, as above.
chromium:
	@if ! test -x /usr/bin/chromium; then \
	  echo "installing Chromium for the browser tests: chromium"; \
	  sudo=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$sudo apt-get update && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y chromium; \
	fi

demo: agents
	$(NODE) scripts/demo.ts

demo-p2p: agents
	$(NODE) scripts/demo-p2p.ts

test: agents chromium
	$(NODE) test/run.ts

bench: agents
	$(NODE) bench/run.ts $(BENCH_ARGS)

typecheck: install
	tsc --noEmit

clean:
	rm -rf agents-as/build agents-c/build agents-js/build
