"""Runs Debian's cloud-init (its Python package, /usr/lib/python3/dist-packages/cloudinit) on user-data,
for Hearth's tests. Run with /usr/bin/python3 (the interpreter Debian's cloud-init is installed for).

    helper.py parts              stdin: user-data (bytes)    stdout: {"parts": [...], "includes": [...]}
    helper.py schema             stdin: one #cloud-config    stdout: {"problems": [...]}
    helper.py write-files ROOT   stdin: one #cloud-config    stdout: {"files": [...]}

Every answer also carries "warnings": what cloud-init logged at WARNING or above while doing it (it
logs, rather than fails, on e.g. a part that will not decompress or an unknown write_files encoding).
Nothing here touches the machine outside the temporary directory or ROOT it is given.
"""

import json
import logging
import os
import sys
import tempfile


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


WARNINGS = Collect()


def answer(result):
    result["warnings"] = WARNINGS.messages
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


def parts(blob):
    """The parts cloud-init's init stage hands its part handlers, exactly as at boot:
    UserDataProcessor.process (MIME, gzip, content-type guessing from `#cloud-config`, `#!`, …)
    then handlers.walk. `#include` URLs are recorded and never fetched."""
    from cloudinit import handlers, helpers, user_data
    from cloudinit.url_helper import UrlError

    includes = []

    def refuse_to_fetch(url, *args, **kwargs):
        includes.append(url)
        raise UrlError(IOError("not fetched by Hearth's tests"), url=url)

    user_data.read_file_or_url = refuse_to_fetch
    # At boot a failed fetch aborts user-data processing; here it is only recorded, so the caller sees
    # the includes and every other part.
    user_data.features.ERROR_ON_USER_DATA_FAILURE = False
    with tempfile.TemporaryDirectory() as tmp:
        paths = helpers.Paths({"cloud_dir": tmp, "run_dir": tmp})
        message = user_data.UserDataProcessor(paths).process(blob)

    found = []

    def callback(_data, filename, payload, headers):
        if isinstance(payload, str):
            # What a handler gets for text parts; cloud-init decoded it with surrogateescape.
            payload = payload.encode("utf-8", "surrogateescape")
        found.append({"filename": filename, "content_type": headers["Content-Type"],
                      "payload_hex": (payload or b"").hex()})

    handlers.walk(message, callback, {})
    return {"parts": found, "includes": includes}


def known_top_level_keys(schema):
    keys = set()

    def collect(node):
        if not isinstance(node, dict):
            return
        ref = node.get("$ref")
        if ref and ref.startswith("#/$defs/"):
            collect(schema["$defs"][ref[len("#/$defs/"):]])
        keys.update(node.get("properties", {}).keys())
        for combinator in ("allOf", "anyOf", "oneOf"):
            for sub in node.get(combinator, []):
                collect(sub)

    collect(schema)
    return keys


# Keys cloud-init reads from user cloud-config that its schema does not describe: the merge directives.
UNDESCRIBED_KEYS = {"merge_how", "merge_type"}


def schema(text):
    """Strict validation against cloud-init's own JSON schema, like `cloud-init schema --config-file`
    plus two refusals it does not make: deprecated keys, and top-level keys the schema does not know
    (a misspelt `write_file` would otherwise pass and the node would silently not get its files)."""
    import yaml
    from cloudinit import safeyaml
    from cloudinit.config.schema import (SchemaValidationError, get_schema,
                                         validate_cloudconfig_schema)

    problems = []
    if not text.startswith("#cloud-config"):
        return {"problems": ['does not begin with "#cloud-config"']}
    try:
        config = safeyaml.load(text)
    except yaml.YAMLError as e:
        return {"problems": ["not valid YAML: %s" % e]}
    if not isinstance(config, dict):
        return {"problems": ["not a YAML mapping (got %s)" % type(config).__name__]}
    full_schema = get_schema()
    try:
        validate_cloudconfig_schema(config, full_schema, strict=True, log_details=False)
    except SchemaValidationError as e:
        problems.extend("%s: %s" % (p.path, p.message) for p in e.schema_errors)
        problems.extend("%s: deprecated: %s" % (p.path, p.message) for p in e.schema_deprecations)
    known = known_top_level_keys(full_schema) | UNDESCRIBED_KEYS
    problems.extend("%s: not a key cloud-init's schema knows" % key
                    for key in sorted(config) if key not in known)
    return {"problems": problems}


def write_files(text, root):
    """cloud-init's own cc_write_files.write_files (encodings, permissions, append) with every path
    moved under ROOT; owners are recorded, not applied. Deferred entries are written after the others,
    as the later `write_files_deferred` module does at boot."""
    from cloudinit import util
    from cloudinit.config import cc_write_files

    config = util.load_yaml(text)
    if not isinstance(config, dict):
        raise SystemExit("the cloud-config is not a YAML mapping")
    owners = {}

    def record_owner(path, user, group):
        owners[path] = "%s:%s" % (user, group)

    util.chownbyname = record_owner
    entries = config.get("write_files") or []
    written = []
    for deferred in (False, True):
        batch = []
        for entry in entries:
            if bool(util.get_cfg_option_bool(entry, "defer", False)) != deferred:
                continue
            moved = dict(entry)
            if entry.get("path"):
                moved["path"] = os.path.join(root, os.path.abspath(entry["path"]).lstrip("/"))
            batch.append(moved)
            written.append((entry, moved, deferred))
        cc_write_files.write_files("write_files", batch, "root:root")
    files = []
    for entry, moved, deferred in written:
        if not entry.get("path"):
            continue
        files.append({"path": os.path.abspath(entry["path"]), "owner": owners.get(moved["path"], ""),
                      "deferred": deferred,
                      "mode": os.stat(moved["path"]).st_mode & 0o7777})
    return {"files": files}


def main():
    # Importing cloud-init replaces the root logger's handlers: collect only after that.
    import cloudinit.util  # noqa: F401
    logging.getLogger().addHandler(WARNINGS)
    logging.getLogger().setLevel(logging.WARNING)
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    data = sys.stdin.buffer.read()
    if command == "parts":
        answer(parts(data))
    elif command == "schema":
        answer(schema(data.decode("utf-8")))
    elif command == "write-files" and len(sys.argv) == 3:
        answer(write_files(data.decode("utf-8"), os.path.abspath(sys.argv[2])))
    else:
        raise SystemExit("usage: helper.py parts | schema | write-files ROOT")


if __name__ == "__main__":
    main()
