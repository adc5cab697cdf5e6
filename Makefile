# One entry point for set-up, build and tests. Every target installs what it needs.
SHELL := /bin/bash
comma := ,
APT_PACKAGES := gcc fuse3 fuse-overlayfs attr acl podman runc skopeo umoci uidmap busybox-static e2fsprogs xfsprogs btrfs-progs squashfs-tools strace
NPM_STAMP := node_modules/.stamp
NATIVE := native-shims/build/Release/strata_shims.node
HOLDER := dist/daemon/holder/strata-holder
# registry pull/push tests: the real registry, htpasswd for its Basic auth, zstd for zstd layers (Node 20 has none)
APT_PACKAGES += docker-registry apache2-utils zstd

.PHONY: all deps apt build native test bench clean mount daemon

all: build

# Debian packages: fuse3 (fusermount3), the reference filesystems and the real container tools the tests drive.
apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

$(NPM_STAMP): package.json
	npm install --no-audit --no-fund
	@touch $@

deps: apt $(NPM_STAMP)

$(NATIVE): native-shims/src/*.c native-shims/binding.gyp $(NPM_STAMP)
	cd native-shims && ../node_modules/.bin/node-gyp rebuild --nodedir=/usr

native: $(NATIVE)

# The fd holder (daemon/holder/strata-holder.c): a small C program, no node in it.
$(HOLDER): daemon/holder/strata-holder.c
	mkdir -p $(@D)
	gcc -O2 -Wall -Wextra -Werror -o $@ $<

# The CLI is also bundled into one file (bin/strata runs it): one file to read and compile starts
# much faster than a tree of modules. yargs is ESM: import.meta.url becomes the bundle's own URL;
# string-width is replaced by cli/string-width.ts (see there). The commonest commands have a
# smaller bundle of their own, without yargs (cli/fast.ts), which bin/strata tries first; the archive
# code they never run stays out of it (required from dist/daemon/archive, next to it, if ever).
# Both get their V8 code cache written by a first run.
build: deps native $(HOLDER)
	./node_modules/.bin/tsc -p tsconfig.json
	./node_modules/.bin/esbuild dist/cli/main.js --bundle --platform=node --target=node20 --minify \
	  --external:*.node --alias:string-width=./cli/string-width.ts --external:yargs/package.json --log-level=warning \
	  --define:import.meta.url=__importMetaUrl \
	  --banner:js="const __importMetaUrl = require('url').pathToFileURL(__filename).href;" \
	  --outfile=dist/cli/strata.js
	./node_modules/.bin/esbuild dist/cli/fast.js --bundle --platform=node --target=node20 --minify \
	  --external:*.node --external:../daemon/archive --log-level=warning --outfile=dist/cli/strata-fast.js
	rm -f dist/cli/strata.js.cache dist/cli/strata-fast.js.cache; bin/strata container ls --help >/dev/null
	bin/strata --socket /nonexistent/strata.sock ps >/dev/null 2>&1 || true
	chmod +x bin/*

test: build
	node dist/test/run.js

bench: build
	scripts/bench

clean:
	rm -rf dist native-shims/build

# The main job: mount a union (LOWER may list several layers separated by ':').
mount: build
	@test -n "$(LOWER)" -a -n "$(MNT)" || { echo "usage: make mount LOWER=dir[:dir...] [UPPER=dir WORK=dir] MNT=dir"; exit 2; }
	mkdir -p $(MNT) $(if $(UPPER),$(UPPER) $(WORK))
	bin/strata-mount -o lowerdir=$(LOWER)$(if $(UPPER),$(comma)upperdir=$(UPPER)$(comma)workdir=$(WORK)) $(MNT)
	@echo "mounted $(MNT); unmount with: umount $(MNT)"

# The main job: run the daemon in the foreground with its defaults
# (root /var/lib/strata, socket /run/strata/strata.sock; override with ARGS="--root DIR --socket PATH").
daemon: build
	bin/stratad $(ARGS)
