# igord — every target runs with the Node pinned in devDependencies (node_modules/.bin first on PATH).
SHELL := /bin/bash
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
NODE := $(CURDIR)/node_modules/.bin/node

AS_AGENTS := $(basename $(notdir $(wildcard agents-as/agents/*.ts)))
AS_WASM := $(AS_AGENTS:%=agents-as/build/%.wasm)

.PHONY: install agents demo test bench typecheck clean

install: node_modules/.installed

# `npm install` (not `npm ci`): npm 11.19's `ci` refuses this lock file because it never records
# cbor-extract's optional per-platform packages; `install` keeps the locked versions and the lock.
node_modules/.installed: package.json package-lock.json
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

agents: install $(AS_WASM)

agents-as/build/%.wasm: agents-as/agents/%.ts agents-as/sdk/*.ts agents-as/asconfig.json
	@mkdir -p agents-as/build
	asc $< --config agents-as/asconfig.json --target release -o $@
	@cp agents-as/agents/$*.manifest.json agents-as/build/$*.manifest.json

demo: agents
	$(NODE) scripts/demo.ts

test: agents
	$(NODE) test/run.ts

bench: agents
	$(NODE) bench/run.ts $(BENCH_ARGS)

typecheck: install
	tsc --noEmit

clean:
	rm -rf agents-as/build
