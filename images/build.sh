#!/usr/bin/env bash
# Build, and with --push push, the images named in hub/mlopshub/image_tags.yaml.
#
#   images/build.sh                  # every image: workspaces and the hub
#   images/build.sh python r         # only these image keys
#   images/build.sh --push           # build all, then push all
#   images/build.sh --dry-run        # print the docker commands, run nothing
#
# Each image is `docker build -f <dockerfile> -t <registry>/<name>:<tag> .`
# from the repository root, with the build arguments its Dockerfile declares:
#   MLOPSHUB_TAG                    hub/mlopshub/image_tags.yaml's `tag`
#   MLOPSHUB_ENVIRONMENT_SHA256       the sha256 of environment.yml
# so that the image's labels say which tag and which manifest it was built from.
# No image is built FROM another: any order, any subset, or parallel CI jobs.
# Pushing starts only after every build has succeeded.
#
# Before building, `python -m mlopshub.imagecheck` (when mlopshub is
# importable) must find the manifest, the Dockerfiles, profiles/ and
# helm-values/ in agreement; --no-check skips it.
#
# Environment: PYTHON (default .venv/bin/python, else python3) reads the YAML;
# DOCKER (default docker) builds and pushes.
set -euo pipefail

usage() {
    sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

push=false
dry_run=false
check=true
keys=()
while (($#)); do
    case "$1" in
        --push) push=true ;;
        --dry-run) dry_run=true ;;
        --no-check) check=false ;;
        -h | --help)
            usage
            exit 0
            ;;
        -*)
            echo "images/build.sh: unknown option $1 (see --help)" >&2
            exit 2
            ;;
        *) keys+=("$1") ;;
    esac
    shift
done

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
docker="${DOCKER:-docker}"

run() {
    if $dry_run; then
        printf '%q ' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# One line per image: key, reference, Dockerfile, tag, sha256 of environment.yml.
plan="$("$python" - ${keys[@]+"${keys[@]}"} <<'PY'
import hashlib
import sys

import yaml

tags = yaml.safe_load(open("hub/mlopshub/image_tags.yaml"))
wanted = sys.argv[1:] or list(tags["images"])
unknown = [key for key in wanted if key not in tags["images"]]
if unknown:
    sys.exit(f"images/build.sh: unknown image key(s) {', '.join(unknown)}; hub/mlopshub/image_tags.yaml has {', '.join(tags['images'])}")
sha = hashlib.sha256(open("environment.yml", "rb").read()).hexdigest()
for key in wanted:
    image = tags["images"][key]
    ref = f"{tags['registry']}/{image['name']}:{tags['tag']}"
    print(key, ref, image["dockerfile"], tags["tag"], sha, sep="\t")
PY
)"

if $check && "$python" -c 'import mlopshub.imagecheck' 2>/dev/null; then
    if ! "$python" -m mlopshub.imagecheck "$repo_root"; then
        echo "images/build.sh: fix the lines above first (or pass --no-check)" >&2
        exit 1
    fi
fi

declares_arg() {
    grep -Eq "^[[:space:]]*ARG[[:space:]]+$2([=[:space:]]|$)" "$1"
}

if ! $dry_run && ! command -v "$docker" >/dev/null; then
    echo "images/build.sh: $docker not found; install Docker or set DOCKER" >&2
    exit 1
fi

built=()
while IFS=$'\t' read -r key ref dockerfile tag sha; do
    [[ -n "$key" ]] || continue
    build_args=()
    if declares_arg "$dockerfile" MLOPSHUB_TAG; then build_args+=(--build-arg "MLOPSHUB_TAG=$tag"); fi
    if declares_arg "$dockerfile" MLOPSHUB_ENVIRONMENT_SHA256; then
        build_args+=(--build-arg "MLOPSHUB_ENVIRONMENT_SHA256=$sha")
    fi
    echo "images/build.sh: building $key -> $ref" >&2
    run "$docker" build ${build_args[@]+"${build_args[@]}"} -t "$ref" -f "$dockerfile" .
    built+=("$ref")
done <<<"$plan"

if $push; then
    for ref in ${built[@]+"${built[@]}"}; do
        run "$docker" push "$ref"
    done
fi
