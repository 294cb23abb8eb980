use super::*;
use crate::testdir::TempDir;
use cordon_core::policy::SystemSet;

const GOOD: &str = r#"
id = "@acme/weather"
version = "1.2.3"
description = "Forecasts"
extends = ["platform"]

[handlers.forecast]
command = ["python3", "main.py", "--fast"]
description = "Tomorrow's weather"

[handlers.bin-tool]
command = ["bin/tool"]

[permissions]
fs.read = ["data/**", "/srv/shared"]
fs.write = ["out"]
fs.deny = ["data/secret"]
net.allow = ["api.github.com:443", "*.weather.example"]
net.deny = ["evil.weather.example"]
env.allow = ["GITHUB_TOKEN", "MY_*"]
exec = ["bin/tool"]
capabilities = ["fs:read", "net:fetch", "llm", "cache:results"]

[quotas]
timeout_ms = 30000
grace_ms = 1000
memory_mb = 256
cpu_ms = 10000
pids = 64
output_bytes = 1048576
"#;

fn parse(text: &str) -> Result<Manifest> {
    Manifest::parse(text, Path::new("plugins/w/cordon.toml"))
}

#[test]
fn a_complete_manifest_parses() {
    let m = parse(GOOD).unwrap();
    assert_eq!(m.id.to_string(), "@acme/weather");
    assert_eq!((m.id.scope(), m.id.name()), ("acme", "weather"));
    assert_eq!(m.version, semver::Version::new(1, 2, 3));
    assert_eq!(m.extends, [Preset::Platform]);
    assert_eq!(m.handlers["forecast"].command, ["python3", "main.py", "--fast"]);
    assert_eq!(m.handlers["forecast"].description.as_deref(), Some("Tomorrow's weather"));
    let p = &m.permissions;
    assert_eq!(p.fs_read, [ManifestPath::InPlugin("data".into()), ManifestPath::Host("/srv/shared".into())]);
    assert_eq!(p.fs_deny, [ManifestPath::InPlugin("data/secret".into())]);
    assert_eq!(p.net_allow[0], NetPattern::parse("api.github.com:443").unwrap());
    assert_eq!(p.exec.as_deref(), Some(&["bin/tool".to_string()][..]));
    assert_eq!(p.capabilities, ["fs:read", "net:fetch", "llm", "cache:results"]);
    assert_eq!(m.quotas.memory_mb, Some(256));
    assert_eq!(m.quotas.file_size_mb, None);
    // Serialisable for `cordon check --json`.
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["id"], "@acme/weather");
    assert_eq!(json["version"], "1.2.3");
}

#[test]
fn a_minimal_manifest_parses_with_defaults() {
    let m = parse("id = \"@a/b\"\nversion = \"0.1.0\"\n[handlers.main]\ncommand = [\"./run.sh\"]\n").unwrap();
    assert_eq!(m.permissions, Permissions::default());
    assert_eq!(m.quotas, Quotas::default());
    assert!(m.extends.is_empty());
}

/// One malformed manifest: what it does wrong, and what cordon must say.
struct Mistake {
    kind: &'static str,
    text: &'static str,
    message: &'static str,
    at: (usize, usize),
    hint: Option<&'static str>,
}

const HEAD: &str = "id = \"@a/b\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"run\"]\n";

fn mistakes() -> Vec<Mistake> {
    vec![
        Mistake {
            kind: "unknown top-level key",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\nname = \"x\"\n[handlers.main]\ncommand = [\"run\"]\n",
            message: "unknown field `name`, expected one of `id`, `version`, `description`, `extends`, `handlers`, `permissions`, `quotas`",
            at: (3, 1),
            hint: Some("remove it, or check the spelling against the keys listed"),
        },
        Mistake {
            kind: "unknown permission key",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"run\"]\n[permissions]\nfs.read = [\"a\"]\n  fs.exec = [\"b\"]\n",
            message: "unknown field `exec`, expected one of `read`, `write`, `deny`",
            at: (7, 6),
            hint: Some("remove it, or check the spelling against the keys listed"),
        },
        Mistake {
            kind: "typo in quotas",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"run\"]\n[quotas]\nmemroy_mb = 64\n",
            message: "unknown field `memroy_mb`, expected one of `timeout_ms`, `grace_ms`, `memory_mb`, `cpu_ms`, `pids`, `output_bytes`, `file_size_mb`",
            at: (6, 1),
            hint: Some("did you mean `memory_mb`?"),
        },
        Mistake {
            kind: "bad id",
            text: "id = \"@Acme/b\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"run\"]\n",
            message: "invalid plugin id `@Acme/b`: scope and name may contain only lowercase letters, digits and `-`",
            at: (1, 6),
            hint: Some("ids look like `@scope/name`: lowercase letters, digits and `-`, 1 to 64 characters each"),
        },
        Mistake {
            kind: "id without scope",
            text: "id = \"weather\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"run\"]\n",
            message: "invalid plugin id `weather`: it must start with `@`",
            at: (1, 6),
            hint: Some("ids look like `@scope/name`: lowercase letters, digits and `-`, 1 to 64 characters each"),
        },
        Mistake {
            kind: "bad version",
            text: "id = \"@a/b\"\nversion   =   \"1.0\"\n[handlers.main]\ncommand = [\"run\"]\n",
            message: "invalid version `1.0`: unexpected end of input while parsing minor version number",
            at: (2, 15),
            hint: Some("use a semantic version such as `1.0.0` or `0.3.1-beta.2`"),
        },
        Mistake {
            kind: "missing version",
            text: "id = \"@a/b\"\n[handlers.main]\ncommand = [\"run\"]\n",
            message: "missing field `version`",
            at: (1, 1),
            hint: Some("see the manifest schema in the cordon-plugin docs (`id`, `version` and one `[handlers.NAME]` are required)"),
        },
        Mistake {
            kind: "no handlers",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\n",
            message: "the manifest declares no handlers",
            at: (1, 1),
            hint: Some("add one, for example `[handlers.main]` with `command = [\"./run.sh\"]`"),
        },
        Mistake {
            kind: "empty handlers table",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\n[handlers]\n",
            message: "`handlers` is empty",
            at: (3, 1),
            hint: Some("add one, for example `[handlers.main]` with `command = [\"./run.sh\"]`"),
        },
        Mistake {
            kind: "bad handler name",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\n[handlers.\"Main Handler\"]\ncommand = [\"run\"]\n",
            message: "invalid handler name `Main Handler`",
            at: (3, 11),
            hint: Some("handler names use lowercase letters, digits, `_` and `-` (1 to 64 characters)"),
        },
        Mistake {
            kind: "empty command",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = []\n",
            message: "handler `main` has an empty command",
            at: (4, 11),
            hint: Some("give the program and its arguments, for example `command = [\"python3\", \"main.py\"]`"),
        },
        Mistake {
            kind: "handler without command",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\n[handlers.main]\ndescription = \"x\"\n",
            message: "missing field `command`",
            at: (3, 1),
            hint: Some("see the manifest schema in the cordon-plugin docs (`id`, `version` and one `[handlers.NAME]` are required)"),
        },
        Mistake {
            kind: "wildcard in fs",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"run\"]\n[permissions]\nfs.read = [\"data\", \"logs/*.txt\"]\n",
            message: "path `logs/*.txt` has a wildcard; only a trailing `/**` (the whole tree) is supported, because access is enforced per path tree",
            at: (6, 20),
            hint: Some("grant the folder itself (`dir` or `dir/**`) and carve out with `fs.deny`"),
        },
        Mistake {
            kind: "fs path leaving the plugin folder",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"run\"]\n[permissions]\nfs.write = [\"../other\"]\n",
            message: "fs.write entry `../other` leaves the plugin folder",
            at: (6, 13),
            hint: Some("relative paths stay inside the plugin folder; write an absolute path to ask for a host path"),
        },
        Mistake {
            kind: "net pattern with a path",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"run\"]\n[permissions]\nnet.allow = [\"api.github.com/repos\"]\n",
            message: "network pattern `api.github.com/repos` is invalid: path-level rules cannot be enforced for HTTPS without TLS interception; name the host only",
            at: (6, 14),
            hint: Some("patterns look like `api.example.com`, `*.example.com`, `*`, each with an optional `:port`"),
        },
        Mistake {
            kind: "net pattern with a scheme",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"run\"]\n[permissions]\nnet.deny = [\"https://x.com\"]\n",
            message: "network pattern `https://x.com` is invalid: drop the scheme; patterns name hosts, not URLs",
            at: (6, 13),
            hint: Some("patterns look like `api.example.com`, `*.example.com`, `*`, each with an optional `:port`"),
        },
        Mistake {
            kind: "out-of-range memory",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"run\"]\n[quotas]\nmemory_mb = 1\n",
            message: "quotas.memory_mb = 1 is out of range",
            at: (6, 13),
            hint: Some("memory_mb accepts 4 to 65536 (64 GiB)"),
        },
        Mistake {
            kind: "zero pids",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"run\"]\n[quotas]\npids = 0\n",
            message: "quotas.pids = 0 is out of range",
            at: (6, 8),
            hint: Some("pids accepts 1 to 4096"),
        },
        Mistake {
            kind: "negative pids",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"run\"]\n[quotas]\npids = -1\n",
            message: "invalid value: integer `-1`, expected u64",
            at: (6, 8),
            hint: Some("quotas are whole, non-negative numbers without quotes"),
        },
        Mistake {
            kind: "timeout over an hour",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"run\"]\n[quotas]\ntimeout_ms = 3600001\n",
            message: "quotas.timeout_ms = 3600001 is out of range",
            at: (6, 14),
            hint: Some("timeout_ms accepts 1 to 3600000 (1 hour)"),
        },
        Mistake {
            kind: "wrong type",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"run\"]\n[quotas]\nmemory_mb = \"256\"\n",
            message: "invalid type: string \"256\", expected u64",
            at: (6, 13),
            hint: Some("quotas are whole, non-negative numbers without quotes"),
        },
        Mistake {
            kind: "command as a string, not a list",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = \"python3 main.py\"\n",
            message: "invalid type: string \"python3 main.py\", expected a sequence",
            at: (4, 11),
            hint: Some("check the value's type: strings are quoted, lists use [ ]"),
        },
        Mistake {
            kind: "duplicate key",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"run\"]\ncommand = [\"other\"]\n",
            message: "duplicate key `command`",
            at: (5, 1),
            hint: None,
        },
        Mistake {
            kind: "syntax error",
            text: "id = \"@a/b\"\nversion = \"1.0.0\n[handlers.main]\ncommand = [\"run\"]\n",
            message: "invalid basic string, expected `\"`",
            at: (2, 17),
            hint: None,
        },
        Mistake {
            kind: "bad env pattern",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"run\"]\n[permissions]\nenv.allow = [\"OK\", \"MY-VAR\"]\n",
            message: "environment pattern `MY-VAR` is invalid; use NAME or PREFIX*",
            at: (6, 20),
            hint: Some("env.allow entries are variable names (`GITHUB_TOKEN`) or prefixes ending in `*` (`MY_*`)"),
        },
        Mistake {
            kind: "bad capability name",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"run\"]\n[permissions]\ncapabilities = [\"llm\", \"Cache:Results\"]\n",
            message: "invalid capability name `Cache:Results`: segments may contain only lowercase letters, digits, `_` and `-`",
            at: (6, 24),
            hint: Some("capability names are lowercase segments separated by `:`, such as `fs:read`, `llm` or `cache:results`"),
        },
        Mistake {
            kind: "unknown capability in a closed namespace",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"run\"]\n[permissions]\ncapabilities = [\"fs:raed\"]\n",
            message: "unknown capability `fs:raed` in namespace `fs`",
            at: (6, 17),
            hint: Some("the `fs` capabilities are `fs:read` and `fs:write`"),
        },
        Mistake {
            kind: "unknown preset",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\nextends = [\"platfrom\"]\n[handlers.main]\ncommand = [\"run\"]\n",
            message: "unknown preset `platfrom`",
            at: (3, 12),
            hint: Some("known presets: `platform`"),
        },
        Mistake {
            kind: "permissions outside [permissions]",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\nread = [\"data\"]\n[handlers.main]\ncommand = [\"run\"]\n",
            message: "unknown field `read`, expected one of `id`, `version`, `description`, `extends`, `handlers`, `permissions`, `quotas`",
            at: (3, 1),
            hint: Some("permissions go under `[permissions]`, for example `fs.read = [\"data\"]`"),
        },
        Mistake {
            kind: "exec with a wildcard",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\n[handlers.main]\ncommand = [\"run\"]\n[permissions]\nexec = [\"bin/*\"]\n",
            message: "path `bin/*` has a wildcard; only a trailing `/**` (the whole tree) is supported, because access is enforced per path tree",
            at: (6, 9),
            hint: Some("grant the folder itself (`dir` or `dir/**`) and carve out with `fs.deny`"),
        },
        Mistake {
            kind: "column counts characters, not bytes",
            text: "id = \"@a/b\"\nversion = \"1.0.0\"\n[handlers]\nmain = { description = \"für später\", command = [] }\n",
            message: "handler `main` has an empty command",
            at: (4, 48),
            hint: Some("give the program and its arguments, for example `command = [\"python3\", \"main.py\"]`"),
        },
    ]
}

#[test]
fn every_kind_of_mistake_names_line_column_and_hint() {
    let table = mistakes();
    assert!(table.len() >= 15);
    for m in &table {
        let err = parse(m.text).expect_err(m.kind);
        match &err {
            ManifestError::Invalid { path, line, column, message, .. } => {
                assert_eq!(message, m.message, "{}", m.kind);
                assert_eq!((*line, *column), m.at, "{}: {message}", m.kind);
                assert_eq!(path, Path::new("plugins/w/cordon.toml"));
            }
            other => panic!("{}: {other:?}", m.kind),
        }
        assert_eq!(err.hint(), m.hint, "{}", m.kind);
        let shown = err.to_string();
        assert_eq!(shown, format!("plugins/w/cordon.toml:{}:{}: {}", m.at.0, m.at.1, m.message));
    }
}

#[test]
fn mistakes_inside_a_larger_manifest_point_at_the_right_line() {
    // The same mistake on line 29 of the complete example.
    let text = GOOD.replace("pids = 64", "pids = 100000");
    let err = parse(&text).unwrap_err();
    assert_eq!(err.location(), Some((29, 8)));
    assert_eq!(err.to_string(), "plugins/w/cordon.toml:29:8: quotas.pids = 100000 is out of range");
}

#[test]
fn excerpt_points_at_the_column() {
    let err = parse(&format!("{HEAD}[quotas]\nmemory_mb = 1\n")).unwrap_err();
    assert_eq!(err.excerpt().unwrap(), "  |\n6 | memory_mb = 1\n  |             ^");
}

#[test]
fn oversized_manifest_is_refused_before_parsing() {
    let dir = TempDir::new("manifest-big");
    // Valid TOML, but over the limit: the size check must come first.
    let text = format!("{HEAD}description = \"{}\"\n", "x".repeat(usize::try_from(MAX_MANIFEST_BYTES).unwrap()));
    std::fs::write(dir.path().join(MANIFEST_FILE), &text).unwrap();
    let err = Manifest::load(dir.path()).unwrap_err();
    assert!(matches!(err, ManifestError::TooLarge { size, .. } if size == text.len() as u64), "{err:?}");
    assert_eq!(err.location(), None);
    assert_eq!(
        err.to_string(),
        format!(
            "{} is {} bytes; a manifest may have at most 65536 bytes",
            dir.path().join(MANIFEST_FILE).display(),
            text.len()
        )
    );
    assert!(matches!(parse(&text), Err(ManifestError::TooLarge { .. })));
}

#[test]
fn not_utf8_is_located() {
    let mut bytes = b"id = \"@a/b\"\nversion = \"1.0.0\"\ndescription = \"caf".to_vec();
    bytes.extend_from_slice(&[0xE9, b'"', b'\n']);
    let err = Manifest::parse_bytes(&bytes, Path::new("m.toml")).unwrap_err();
    assert_eq!(err.to_string(), "m.toml:3:19: the file is not valid UTF-8");
}

#[test]
fn missing_manifest_names_the_file() {
    let dir = TempDir::new("manifest-none");
    let err = Manifest::load(dir.path()).unwrap_err();
    assert_eq!(err.to_string(), format!("cannot read {}", dir.path().join("cordon.toml").display()));
    assert!(err.hint().is_some());
}

#[test]
fn load_reads_the_folder_manifest() {
    let dir = TempDir::new("manifest-load");
    std::fs::write(dir.path().join(MANIFEST_FILE), GOOD).unwrap();
    let m = Manifest::load(dir.path()).unwrap();
    assert_eq!(m.path, dir.path().join(MANIFEST_FILE));
}

#[test]
fn policy_resolves_paths_against_the_plugin_folder() {
    let m = parse(GOOD).unwrap();
    let plugin = Path::new("/srv/plugins/weather");
    let p = m.policy(plugin, Some(Path::new("/var/lib/cordon/data/weather"))).unwrap();
    let paths = |rules: &[PathRule]| rules.iter().map(|r| r.path.display().to_string()).collect::<Vec<_>>();
    assert_eq!(paths(&p.fs.read), ["/srv/plugins/weather", "/srv/plugins/weather/data", "/srv/shared"]);
    assert_eq!(paths(&p.fs.write), ["/var/lib/cordon/data/weather", "/srv/plugins/weather/out"]);
    assert_eq!(paths(&p.fs.deny), ["/srv/plugins/weather/data/secret"]);
    assert_eq!(p.fs.system, SystemSet::Include);
    assert_eq!(p.net.allow.len(), 2);
    assert_eq!(p.net.deny, [NetPattern::parse("evil.weather.example").unwrap()]);
    assert_eq!(p.env.allow, [EnvPattern::parse("GITHUB_TOKEN").unwrap(), EnvPattern::parse("MY_*").unwrap()]);
    assert_eq!(p.env.set, [(DATA_DIR_ENV.to_string(), "/var/lib/cordon/data/weather".to_string())]);
    assert_eq!(p.exec, Some(vec![PathBuf::from("/srv/plugins/weather/bin/tool")]));
    assert_eq!(p.limits.timeout_ms, Some(30_000));
    assert_eq!(p.limits.memory_mb, Some(256));
    assert_eq!(p.limits.output_bytes, 1_048_576);
    assert!(p.validate().is_ok());
}

#[test]
fn without_the_platform_preset_there_is_no_data_folder() {
    let m = parse(HEAD).unwrap();
    let p = m.policy(Path::new("/p"), Some(Path::new("/data"))).unwrap();
    assert_eq!(p.fs.read, [PathRule { path: "/p".into() }]);
    assert!(p.fs.write.is_empty());
    assert!(p.env.set.is_empty());
    assert!(p.net.allow.is_empty());
    assert_eq!(p.exec, None);
    assert_eq!(p.limits.timeout_ms, None);
}

#[test]
fn platform_preset_without_a_data_folder_grants_no_write() {
    let m = parse(&HEAD.replace("version = \"1.0.0\"\n", "version = \"1.0.0\"\nextends = [\"platform\"]\n")).unwrap();
    assert!(m.policy(Path::new("/p"), None).unwrap().fs.write.is_empty());
}

#[test]
fn handlers_resolve_in_the_plugin_folder_then_on_path() {
    let dir = TempDir::new("manifest-resolve");
    std::fs::write(dir.path().join("main.sh"), "#!/bin/sh\n").unwrap();
    let bin = TempDir::new("manifest-path");
    std::fs::write(bin.path().join("tool"), "").unwrap();
    let m = parse(
        "id = \"@a/b\"\nversion = \"1.0.0\"\n\
         [handlers.local]\ncommand = [\"main.sh\", \"x\"]\n\
         [handlers.slash]\ncommand = [\"bin/run\"]\n\
         [handlers.onpath]\ncommand = [\"tool\"]\n\
         [handlers.nowhere]\ncommand = [\"no-such-program-xyz\"]\n",
    )
    .unwrap();
    let search = bin.path().to_str().unwrap();
    let r = m.resolve_handler("local", dir.path(), search).unwrap();
    assert_eq!(r.program, dir.path().join("main.sh"));
    assert_eq!(r.argv, ["main.sh", "x"]);
    assert_eq!(m.resolve_handler("slash", dir.path(), search).unwrap().program, dir.path().join("bin/run"));
    assert_eq!(m.resolve_handler("onpath", dir.path(), search).unwrap().program, bin.path().join("tool"));
    let e = m.resolve_handler("nowhere", dir.path(), search).unwrap_err();
    assert!(
        e.to_string().starts_with("program `no-such-program-xyz` of handler `nowhere` is not in the plugin folder"),
        "{e}"
    );
    let e = m.resolve_handler("nope", dir.path(), search).unwrap_err();
    assert_eq!(e.to_string(), "plugin @a/b has no handler `nope`; it has: local, nowhere, onpath, slash");
}

#[test]
fn plugin_ids() {
    for ok in ["@a/b", "@acme-corp/weather-2", &format!("@{}/{}", "a".repeat(64), "b".repeat(64))] {
        assert_eq!(ok.parse::<PluginId>().unwrap().to_string(), ok);
    }
    for bad in ["a/b", "@a", "@/b", "@a/", "@a/b/c", "@A/b", "@a/b_c", &format!("@{}/b", "a".repeat(65))] {
        assert!(bad.parse::<PluginId>().is_err(), "{bad}");
    }
}

#[test]
fn quotas_fill_in_cordon_defaults() {
    let q = Quotas { memory_mb: Some(64), ..Quotas::default() };
    let l = q.to_limits();
    assert_eq!(l.memory_mb, Some(64));
    assert_eq!(l.grace_ms, Limits::default().grace_ms);
    assert_eq!(l.output_bytes, Limits::default().output_bytes);
}

#[test]
fn every_quota_range_is_accepted_by_the_core_limits() {
    // The manifest's ranges must be at least as strict as Limits::validate.
    for r in QUOTA_RANGES {
        for v in [r.min, r.max] {
            let q = match r.name {
                "timeout_ms" => Quotas { timeout_ms: Some(v), ..Quotas::default() },
                "grace_ms" => Quotas { grace_ms: Some(v), ..Quotas::default() },
                "memory_mb" => Quotas { memory_mb: Some(v), ..Quotas::default() },
                "cpu_ms" => Quotas { cpu_ms: Some(v), ..Quotas::default() },
                "pids" => Quotas { pids: Some(v), ..Quotas::default() },
                "output_bytes" => Quotas { output_bytes: Some(v), ..Quotas::default() },
                "file_size_mb" => Quotas { file_size_mb: Some(v), ..Quotas::default() },
                other => panic!("{other}"),
            };
            let policy = Policy { limits: q.to_limits(), ..Policy::default() };
            assert!(policy.validate().is_ok(), "{} = {v}", r.name);
        }
    }
}

#[test]
fn locate_counts_lines_and_characters() {
    assert_eq!(locate("ab\ncdé f\n", 9), (2, 6, "cdé f".to_string()));
    assert_eq!(locate("", 0), (1, 1, String::new()));
    assert_eq!(locate("x\r\ny", 3), (2, 1, "y".to_string()));
}
