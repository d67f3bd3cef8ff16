# Two entry points for a fresh machine (Debian, Python 3.11, root): `make demo` and `make test`.
# Everything else is a step they share.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
GRADER := $(BIN)/grader
DEMO := demo
# Debian packages the grader needs: bubblewrap for the sandbox (setpriv, prlimit come with util-linux; libseccomp2
# for its system-call filter, loaded by pyseccomp), podman
# with runc for the container backend (tested from a root filesystem; crun fails on cgroup v1 hybrid hosts),
# WordNet for the offline NLTK data, git and TeX for task 3 (latexmk + pdflatex with the LaTeX base and
# recommended packages such as listings and KOMA-Script, German babel, Latin Modern fonts; about 210 MB installed).
APT_PACKAGES := bubblewrap util-linux libseccomp2 podman runc wordnet-base wordnet-sense-index git texlive-latex-base \
	texlive-latex-recommended texlive-lang-german latexmk lmodern
# Task 3: the TeX a student's machine has: latex-extra (enumitem, titlesec, svg) and Inkscape for \includesvg.
APT_PACKAGES += texlive-latex-extra inkscape
# Only the tests need these, so `make demo` does not wait for them: the cgroup v2 VM of tests/test_cgroup2_vm.py
# (busybox for its initramfs, and qemu where KVM runs hardware-virtualised guests; elsewhere it boots user-mode
# Linux, unpacked from Debian's package, with patchelf to run it on testing's glibc: docs/cgroup2-vm.md), and
# Debian's headless chromium, which Playwright drives in the review page's browser tests (tests/test_review.py);
# sudo, through which an ordinary user's grader starts the sandbox launcher (tests/test_privilege_split.py).
TEST_APT_PACKAGES := busybox-static patchelf $(if $(wildcard /sys/module/kvm_intel /sys/module/kvm_amd),qemu-system-x86) \
	chromium mmdebstrap sudo

# Installs the Debian packages given that are missing (one apt-get call), and python3-venv where venv is missing.
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

.PHONY: demo test test-fast setup data system-packages test-system-packages lock clean runtime runtime-verify benchmark

setup: system-packages $(VENV)/.installed

# Offline data the notebooks load (NLTK, 20 Newsgroups cache, model path); kept once built.
data: setup
	$(GRADER) data

system-packages:
	$(call apt_install,$(APT_PACKAGES))

test-system-packages:
	$(call apt_install,$(TEST_APT_PACKAGES))

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -qq --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/pip install -qq --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

# The demo works in its own folder (demo/), next to the course's real data, never on it: for each task, a
# Moodle export generated from the task's solutions goes through import -> grade -> status -> export.
# This machine has no GPU, so task 5's fine-tuning runs in fast mode and its verdicts are provisional: a
# course's export leaves those out; the demo includes them (--include-provisional) to show a whole worksheet.
# A representative sample of each task's solutions (the reference, alternatives and mistakes), so a newcomer
# sees a graded export within minutes; the tests grade every solution.
DEMO_TASKS := task3 task4 task5
DEMO_PICK := 6
demo: data
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	cp grader.toml $(DEMO)/grader.toml
	ln -s ../assignments $(DEMO)/assignments
	ln -s ../.offline-data $(DEMO)/.offline-data
	set -e; for task in $(DEMO_TASKS); do \
		$(GRADER) -c $(DEMO)/grader.toml sample $$task --pick $(DEMO_PICK) --out $(DEMO)/moodle-$$task; \
		$(GRADER) -c $(DEMO)/grader.toml import $$task $(DEMO)/moodle-$$task/*.zip --worksheet $(DEMO)/moodle-$$task/Grades-*.csv; \
		$(GRADER) -c $(DEMO)/grader.toml grade $$task; \
		$(GRADER) -c $(DEMO)/grader.toml status $$task; \
		$(GRADER) -c $(DEMO)/grader.toml export $$task --worksheet $(DEMO)/moodle-$$task/Grades-*.csv --out $(DEMO)/Upload-$$task.csv \
			--include-provisional; \
	done
	@echo "Upload $(DEMO)/Upload-<task>.csv to Moodle (Grading action: Upload grading worksheet)."

# The CPU runtime image (runtimes/README.md), which tests/test_runtime_image.py grades in: built from Debian's
# and the Python registry's packages with mmdebstrap, kept in podman's store under a hash of its inputs, so this
# is a no-op (seconds) until the lock, the recipe or the offline data change; then it takes 4 minutes with the
# downloads cached, 10-30 on a fresh machine. Not a step of `make test` (its budget is 20 minutes, and a moved
# Debian mirror must not fail the suite): `make runtime test` runs the image tests too; without the image
# they are skipped and say so.
# runtime-verify builds the image a second time and says whether the digest came out the same (once per image).
runtime: data test-system-packages
	runtimes/build.sh cpu

runtime-verify: runtime
	runtimes/build.sh --verify cpu

test: data test-system-packages
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n 2 --maxschedchunk 1 --durations=15

# The inner loop: everything that starts no sandbox (configuration, import, Moodle formats, doctor's logic), in
# well under a minute. `make test` runs these and the rest.
test-fast: setup
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n 2 -m "not sandbox and not slow" -p no:randomly

# Issue 16's benchmark: task 5's clustering notebook graded by plain papermill, nbgrader autograde and `grader
# grade` (1 and 2 workers), the fixed overhead per submission and a regrade; ends with a RESULT line. 40
# submissions take long on 2 cores: `make benchmark BENCHMARK_ARGS=--quick` runs 8 in a few minutes.
BENCHMARK_ARGS ?=
benchmark: data
	$(BIN)/python benchmarks/grade_throughput.py $(BENCHMARK_ARGS)

# Regenerate requirements.lock (with hashes) from requirements.in; needs network access to the registry.
lock:
	$(BIN)/pip install -qq pip-tools
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
		--no-emit-find-links -o requirements.lock requirements.in

clean:
	rm -rf $(DEMO) .pytest_cache
