"""py-notes: ordinary Python. Input on stdin, state in $CORDON_DATA_DIR,
the result written to the descriptor in $CORDON_RESULT_FD, files for the
caller in $CORDON_ARTIFACTS."""
import json
import os
import sys
import urllib.request

STORE = os.path.join(os.environ["CORDON_DATA_DIR"], "notes.json")


def load():
    try:
        with open(STORE) as f:
            return json.load(f)
    except FileNotFoundError:
        return []


def reply(value):
    with os.fdopen(int(os.environ["CORDON_RESULT_FD"]), "w") as out:
        json.dump(value, out)


def main():
    command = sys.argv[1]
    args = json.load(sys.stdin)
    notes = load()
    if command == "add":
        notes.append(str(args["text"]))
        with open(STORE + ".tmp", "w") as f:
            json.dump(notes, f)
        os.replace(STORE + ".tmp", STORE)
        print(f"stored note {len(notes)}", file=sys.stderr)
        reply({"count": len(notes)})
    elif command == "list":
        with open(os.path.join(os.environ["CORDON_ARTIFACTS"], "notes.md"), "w") as f:
            f.writelines(f"- {n}\n" for n in notes)
        reply({"notes": notes})
    elif command == "share":
        body = json.dumps(notes).encode()
        try:
            with urllib.request.urlopen(args["url"], data=body, timeout=5) as r:
                reply({"shared": len(notes), "status": r.status})
        except OSError as e:
            print(f"share failed: {e}", file=sys.stderr)
            reply({"shared": 0, "error": str(getattr(e, "reason", e))})
            sys.exit(1)


main()
