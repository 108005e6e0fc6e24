#!/usr/bin/env bash
# Fails when anything the repository tracks (code, build files, tests, docs) reaches for a file
# outside the repository: the notes and captures the project started from are not part of a
# clone, so every byte a test reads and every document a reader is sent to must be in here.
set -euo pipefail
cd "$(dirname "$0")/.."
pattern='\.\./shared|shared/(spec|fixtures)|DESIGN\.md|steering repo|include_(bytes|str)!\("(\.\./){3,}'
if hits=$(git grep -nIE "$pattern" -- . ':!scripts/self-contained.sh'); then
    echo "self-contained: these lines reach outside the repository:" >&2
    echo "$hits" >&2
    exit 1
fi
echo "self-contained: nothing reaches outside the repository"
