# Release build: static binaries for linux amd64 and arm64 stamped with version, commit and date,
# man pages and completions generated from the CLI, and .deb packages (nfpm).
#   make            the host binary in dist/scimsync
#   make release    dist/linux_{amd64,arm64}/scimsync, tarballs and SHA256SUMS
#   make deb        dist/scimsync_<version>_<arch>.deb for each arch
#   make test       go vet and every test (SCIMSYNC_REQUIRE_SLAPD=1 makes missing slapd fail)

GO        ?= go
ARCHES    ?= amd64 arm64
DIST      := dist
NFPM      := $(GO) tool -modfile=tools/go.mod nfpm

GIT_DESCRIBE := $(shell git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null)
SHORT        := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
VERSION      ?= $(if $(GIT_DESCRIBE),$(GIT_DESCRIBE),v0.0.0-dev+$(SHORT))
COMMIT       ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# the commit's time, not the build's, so the same commit builds the same bytes
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)
DATE         ?= $(shell date -u -d @$(SOURCE_DATE_EPOCH) +%Y-%m-%dT%H:%M:%SZ)
# Debian versions: no leading v, no '-' (it would start a Debian revision); ~ sorts before
DEB_VERSION  ?= $(shell echo '$(VERSION)' | sed -e 's/^v//' -e 's/-dev+/~dev+/' -e 's/-\([0-9][0-9]*\)-g/+\1.g/' -e 's/-dirty$$/+dirty/' -e 's/-/~/g')

LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
BUILD   := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'

.PHONY: all build release man completions deb test clean FORCE
all: build

build: $(DIST)/scimsync

$(DIST)/scimsync: FORCE
	$(BUILD) -o $@ ./cmd/scimsync

$(DIST)/linux_%/scimsync: FORCE
	GOOS=linux GOARCH=$* $(BUILD) -o $@ ./cmd/scimsync

release: $(ARCHES:%=$(DIST)/linux_%/scimsync)
	cd $(DIST) && for a in $(ARCHES); do \
	  tar --sort=name --mtime=@$(SOURCE_DATE_EPOCH) --owner=0 --group=0 --numeric-owner \
	    -czf scimsync_$(VERSION)_linux_$$a.tar.gz -C linux_$$a scimsync -C ../.. LICENSE README.md; \
	done && sha256sum scimsync_*.tar.gz > SHA256SUMS

man: build
	rm -rf $(DIST)/man && $(DIST)/scimsync man $(DIST)/man && gzip -9n $(DIST)/man/*.1

completions: build
	mkdir -p $(DIST)/completions
	$(DIST)/scimsync completion bash > $(DIST)/completions/scimsync.bash
	$(DIST)/scimsync completion zsh > $(DIST)/completions/_scimsync
	$(DIST)/scimsync completion fish > $(DIST)/completions/scimsync.fish

deb: $(ARCHES:%=$(DIST)/linux_%/scimsync) man completions
	for a in $(ARCHES); do \
	  mkdir -p $(DIST)/pkg && cp $(DIST)/linux_$$a/scimsync $(DIST)/pkg/scimsync && \
	  ARCH=$$a DEB_VERSION='$(DEB_VERSION)' $(NFPM) package --packager deb --config nfpm.yaml --target $(DIST)/ || exit 1; \
	done

test:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

clean:
	rm -rf $(DIST)
