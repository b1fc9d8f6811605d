# Build and install autonomy as a system service (GNU conventions: PREFIX, DESTDIR).
#
#   make                                  # the release binary, static Swift runtime
#   sudo make install                     # into /usr/local, then creates the users and folders
#                                         # (run `make` first, as yourself: install never rebuilds)
#   make install DESTDIR=/tmp/stage PREFIX=/usr   # staged (packaging/deb/build.sh does this)
#   sudo make uninstall                   # the files install put there; never the config or data
#
# Installing sets nothing running: `systemctl enable --now autonomy-worker.timer` does.

PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
DATADIR     ?= $(PREFIX)/share
MANDIR      ?= $(DATADIR)/man
SYSCONFDIR  ?= /etc
# systemd reads units, sysusers.d and tmpfiles.d from $(PREFIX)/lib for /usr and /usr/local alike.
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
ZSHCOMPDIR  ?= $(DATADIR)/zsh/vendor-completions
FISHCOMPDIR ?= $(DATADIR)/fish/vendor_completions.d
# The example configuration, which the package's postinst copies to /etc when there is none.
EXAMPLEDIR  ?= $(DATADIR)/autonomy

SWIFT       ?= swift
BUILD_DIR   ?= .build
BINARY      := $(BUILD_DIR)/release/autonomy
INSTALL     ?= install

UNITS := $(wildcard systemd/*.service systemd/*.timer systemd/*.socket)

.PHONY: all build install uninstall man clean

all: build

# A generic type named in code is made from its mangled name by default, and on Linux the first
# conformance each such name needs scans all 12,000 conformance records of the binary. Direct
# metadata accessors, in every module, pass the conformance instead: a fifth of the instructions
# a `work-once` or an `enqueue` starts with (bench/HISTORY.md).
SWIFT_FLAGS ?= -Xswiftc -Xfrontend -Xswiftc -disable-concrete-type-metadata-mangled-name-accessors

# The C++ runtime the static Swift runtime needs, linked in rather than loaded at each start: the
# dynamic linker's 3,000 symbol lookups for libstdc++.so were a seventh of the instructions of one
# `enqueue` (bench/HISTORY.md). The Swift driver names it as `-lstdc++`; a linker script of that
# name, found first, hands the linker the static archive instead. The archive is the one the
# clang beside swift links with; where it knows none, the binary loads libstdc++.so as before.
STATIC_CXX_DIR := $(abspath $(BUILD_DIR))/static-libstdc++
SWIFT_CLANG    := $(dir $(realpath $(shell command -v $(SWIFT) 2>/dev/null)))clang
LIBSTDCXX_A    := $(shell '$(SWIFT_CLANG)' -print-file-name=libstdc++.a 2>/dev/null)
ifneq ($(wildcard $(filter /%,$(LIBSTDCXX_A))),)
STATIC_CXX      = -Xlinker '-L$(STATIC_CXX_DIR)'
endif

build:
ifneq ($(STATIC_CXX),)
	mkdir -p '$(STATIC_CXX_DIR)'
	echo 'INPUT("$(LIBSTDCXX_A)")' > '$(STATIC_CXX_DIR)/libstdc++.so'
endif
	$(SWIFT) build -c release --static-swift-stdlib $(SWIFT_FLAGS) $(STATIC_CXX) --scratch-path $(BUILD_DIR)

$(BINARY):
	$(MAKE) build

install: $(BINARY)
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR) \
		$(DESTDIR)$(EXAMPLEDIR)
	$(INSTALL) -m 0755 $(BINARY) $(DESTDIR)$(BINDIR)/autonomy
	# The units name the binary where this install puts it.
	for unit in $(UNITS); do \
		sed 's|/usr/local/bin/autonomy|$(BINDIR)/autonomy|g' $$unit > $(DESTDIR)$(UNITDIR)/$$(basename $$unit) && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$(basename $$unit) || exit 1; \
	done
	$(INSTALL) -m 0644 systemd/sysusers.d/autonomy.conf $(DESTDIR)$(SYSUSERSDIR)/autonomy.conf
	$(INSTALL) -m 0644 systemd/tmpfiles.d/autonomy.conf $(DESTDIR)$(TMPFILESDIR)/autonomy.conf
	$(INSTALL) -m 0644 docs/man/autonomy.1 $(DESTDIR)$(MANDIR)/man1/autonomy.1
	# bash-completion sources the file: no #! line.
	$(BINARY) --generate-completion-script bash | sed '1{/^#!/d}' > $(DESTDIR)$(BASHCOMPDIR)/autonomy
	$(BINARY) --generate-completion-script zsh > $(DESTDIR)$(ZSHCOMPDIR)/_autonomy
	$(BINARY) --generate-completion-script fish > $(DESTDIR)$(FISHCOMPDIR)/autonomy.fish
	chmod 0644 $(DESTDIR)$(BASHCOMPDIR)/autonomy $(DESTDIR)$(ZSHCOMPDIR)/_autonomy $(DESTDIR)$(FISHCOMPDIR)/autonomy.fish
	$(INSTALL) -m 0644 config.example.json $(DESTDIR)$(EXAMPLEDIR)/autonomy.example.json
	# The configuration: the example, only where there is none yet (never over an operator's).
	$(INSTALL) -d -m 0750 $(DESTDIR)$(SYSCONFDIR)/autonomy
	if [ ! -e $(DESTDIR)$(SYSCONFDIR)/autonomy/autonomy.json ]; then \
		$(INSTALL) -m 0640 config.example.json $(DESTDIR)$(SYSCONFDIR)/autonomy/autonomy.json; \
	fi
	# Installed for real (no DESTDIR, as root, under systemd): the users, the folders, the units.
	if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && [ -d /run/systemd/system ]; then \
		systemd-sysusers $(SYSUSERSDIR)/autonomy.conf && \
		systemd-tmpfiles --create $(TMPFILESDIR)/autonomy.conf && \
		systemctl daemon-reload; \
	fi
	@echo "installed. Next: autonomy operator init (as each operator), then"
	@echo "  sudo systemctl enable --now autonomy-worker.timer autonomy-gate.socket"
	@echo "  sudo -u autonomy autonomy doctor"

uninstall:
	# Uninstalled for real: nothing enabled may go on starting a binary that is gone.
	if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && [ -d /run/systemd/system ]; then \
		systemctl disable --now autonomy-worker.timer autonomy-audit.timer autonomy-heal.timer \
			autonomy-gate.socket autonomy-web.service 2>/dev/null || true; \
	fi
	rm -f $(DESTDIR)$(BINDIR)/autonomy
	for unit in $(UNITS); do rm -f $(DESTDIR)$(UNITDIR)/$$(basename $$unit); done
	rm -f $(DESTDIR)$(SYSUSERSDIR)/autonomy.conf $(DESTDIR)$(TMPFILESDIR)/autonomy.conf
	rm -f $(DESTDIR)$(MANDIR)/man1/autonomy.1
	rm -f $(DESTDIR)$(BASHCOMPDIR)/autonomy $(DESTDIR)$(ZSHCOMPDIR)/_autonomy $(DESTDIR)$(FISHCOMPDIR)/autonomy.fish
	rm -f $(DESTDIR)$(EXAMPLEDIR)/autonomy.example.json
	-rmdir $(DESTDIR)$(EXAMPLEDIR) 2>/dev/null
	if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "left in place: $(SYSCONFDIR)/autonomy (configuration, keys) and /var/lib/autonomy (the database)"

# The man page is generated from the commands' help (swift-argument-parser's plugin) and
# committed, so a build needs no plugin run.
man:
	mkdir -p $(BUILD_DIR)/man
	$(SWIFT) package --allow-writing-to-directory $(BUILD_DIR)/man generate-manual \
		--authors "the autonomy developers" --output-directory $(BUILD_DIR)/man
	# An empty line is not mdoc (groff warns): a paragraph break is .Pp.
	sed 's/^$$/.Pp/' $(BUILD_DIR)/man/autonomy.1 > docs/man/autonomy.1

clean:
	$(SWIFT) package clean --scratch-path $(BUILD_DIR)
