# Shortcuts for what the README describes; every target runs the same commands you could type.
REF ?= prod
IMAGE ?= modelops-churn
BUNDLE ?= build/bundle
ENGINE ?= $(shell command -v podman || command -v docker)
BASE_IMAGE ?= docker.io/library/python:3.11-slim
# e.g. BUILD_FLAGS="--isolation chroot --network host" for podman/buildah without a daemon
BUILD_FLAGS ?=
FORMAT_FLAG = $(if $(findstring podman,$(ENGINE)),--format docker,)

.PHONY: image bundle

# Materialise the registry ref (verifying hashes), then build the image tagged with its version.
# The digest of the bundle's manifest, just verified against the registry, is baked into the image
# as the server's root of trust (MODELOPS_SERVE_BUNDLE_SHA256).
image: bundle
	version=$$(python -c "import json; print(json.load(open('$(BUNDLE)/bundle.json'))['version'])") && \
	digest=$$(python -c "from modelops.registry.bundle import manifest_sha256; print(manifest_sha256('$(BUNDLE)'))") && \
	$(ENGINE) build $(FORMAT_FLAG) $(BUILD_FLAGS) -f deploy/Containerfile \
		--build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg BUNDLE=$(BUNDLE) \
		--build-arg BUNDLE_SHA256=$$digest \
		-t $(IMAGE):$$version -t $(IMAGE):$(REF) .

# Replaces build/bundle only when it is one of modelops' own bundles, and only once the new one is
# verified; anything else there is refused, never deleted.
bundle:
	modelops registry bundle $(REF) --out $(BUNDLE)
