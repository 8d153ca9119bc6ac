//! The `tollgate` command line: subcommands on clap (derive), and every setting as a global
//! option generated from the settings themselves, so the one declaration of a setting (its
//! variable, default, range and meaning, in `config.rs` and the crates it reads from) is also
//! its flag, its `--help` line with the real default and its environment variable.
//!
//! clap parses the command line (unknown options, missing values, `--version`, `help <command>`,
//! completions); the values it found are then handed to [`SettingsReader`] as `--name=value`, which
//! checks every setting's type and range and reports every invalid one at once, as before.

use crate::config::IngressConfig;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use tollgate_core::settings::{flag_for, SettingDoc, SettingsReader};

/// What `tollgate` was asked to do.
#[derive(Debug, Parser)]
#[command(
    name = "tollgate",
    version,
    about = "tollgate: the audited API front door (the ingress and its operator commands)",
    long_about = "tollgate: the audited API front door. Without a command it serves (`tollgate serve`).\n\
                  Every option is also an environment variable (shown as [env: ...]); an option wins over\n\
                  its variable. Embedded mode (the default) keeps everything under --data-dir.",
    propagate_version = true
)]
pub struct Cli {
    /// The command (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the ingress: listen, route, record, audit (the default).
    Serve,
    /// Apply the request log's schema migrations and exit.
    Migrate,
    /// Read the request log directly from its store (SQLite, or Aurora through the Data API).
    #[command(subcommand)]
    Requests(RequestsCommand),
    /// Write records received in a time range to standard output, oldest page last, one JSON
    /// object a line.
    Export(ExportArgs),
    /// Manage API keys (kept in the request log's database; only a hash of each secret).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print the C2SP tlog-proof of a request's audit event (as `GET /v1/requests/{id}/proof`).
    Prove {
        /// The request id (the `x-request-id` of its answer).
        #[arg(required_unless_present = "receipt", conflicts_with = "receipt")]
        request_id: Option<String>,
        /// A receipt (a `Tollgate-Receipt` header value, or its decoded document) instead of a
        /// request id: the proof of its event, checked to be the receipt's leaf.
        #[arg(long)]
        receipt: Option<std::path::PathBuf>,
    },
    /// Verify a C2SP tlog-proof offline against the log's verifier key and the event's line.
    VerifyProof {
        /// The proof file (`tollgate prove` or `GET /v1/requests/{id}/proof`).
        file: std::path::PathBuf,
        /// The log's verifier key (`<name>+<hex key id>+<base64 key>`, as `tollgate log-key`
        /// prints it), or a file holding it.
        #[arg(long)]
        vkey: String,
        /// A file holding the event's exact line in its audit object (default: standard input).
        #[arg(long)]
        event: Option<std::path::PathBuf>,
    },
    /// Verify a receipt offline: its certificate against the log's verifier key, its statement
    /// against the certified key, its path to its window's root, and the event's line if given.
    VerifyReceipt {
        /// The receipt file (the `Tollgate-Receipt` header value, or its decoded document).
        file: std::path::PathBuf,
        /// The log's verifier key (`<name>+<hex key id>+<base64 key>`, as `tollgate log-key`
        /// prints it), or a file holding it.
        #[arg(long)]
        vkey: String,
        /// A file holding the event's exact line in its audit object (optional: without it the
        /// receipt's own leaf hash is checked).
        #[arg(long)]
        event: Option<std::path::PathBuf>,
    },
    /// Print the transparency log's verifier key (note `vkey` format).
    LogKey,
    /// Verify the audit trail: the signed digest chain, every audit object, the Merkle log
    /// recomputed from the events against every checkpoint and tile, and the request log.
    /// Exit status 0: verified; 1: findings (one line each); 2: the check could not run.
    Verify(VerifyArgs),
    /// Print a completion script for a shell.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `tollgate requests ...`
#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// One page of records, newest first (the body of `GET /v1/requests`).
    List(ListArgs),
    /// One record and its audit event (the body of `GET /v1/requests/{id}`).
    Get {
        /// The request id (the `x-request-id` of its answer).
        request_id: String,
    },
}

/// `tollgate verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Check only the digest periods ending after this time (RFC 3339).
    #[arg(long)]
    pub from: Option<String>,
    /// Check only the digest periods starting before this time (RFC 3339).
    #[arg(long)]
    pub to: Option<String>,
    /// A signed checkpoint kept from an earlier look at the log (catches a truncated or forked log).
    #[arg(long)]
    pub checkpoint: Option<std::path::PathBuf>,
    /// The log's verifier key (`<name>+<hex key id>+<base64 key>`), or a file holding it;
    /// default in embedded mode: the key of `<data dir>/log-key`.
    #[arg(long)]
    pub vkey: Option<String>,
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// aws mode: how often the audit-digest function runs, in milliseconds (the stack's
    /// DigestIntervalMinutes x 60,000); a closed period's digest is missing once its grace and
    /// two of these have passed. Embedded mode uses its timer's tick (a quarter period, 1-60 s).
    #[arg(long, default_value_t = DEFAULT_DIGEST_SCHEDULE_MS, value_parser = clap::value_parser!(u64).range(1_000..=86_400_000))]
    pub digest_schedule_ms: u64,
}

/// The default of `tollgate verify --digest-schedule-ms`: the stack's default digest schedule,
/// `rate(15 minutes)` (template.yaml, `DigestIntervalMinutes`).
pub const DEFAULT_DIGEST_SCHEDULE_MS: u64 = 15 * 60 * 1000;

/// `tollgate keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a key and print its secret, once (`tg_<key id>_<secret>`); only its hash is kept.
    Create {
        /// What the key is for (shown in `keys list` and in every record it makes).
        #[arg(long)]
        name: String,
        /// Scopes it grants, comma-separated (e.g. requests:read or requests:read:own).
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// It stops working after this long: a number and a unit, s, m, h or d (e.g. 90d).
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List every key (never a secret), oldest first, one JSON object a line.
    List,
    /// Revoke a key: it stops working within TOLLGATE_AUTH_CACHE_MS.
    Revoke {
        /// The key id (the part after `tg_` in the key, as `keys list` shows it).
        key_id: String,
    },
}

/// A duration such as `90d`, `12h`, `30m` or `45s`.
pub fn parse_expiry(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and a unit, e.g. 90d"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit is s, m, h or d")),
    };
    if n == 0 || n > 36_500 * 86_400 / secs {
        return Err(format!("{text:?}: between 1 s and 100 years"));
    }
    Ok(std::time::Duration::from_secs(n * secs))
}

/// The filters of `GET /v1/requests`, with the same names and the same checks.
#[derive(Debug, Clone, Default, Args)]
pub struct ListArgs {
    /// Received at or after (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Received before (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// Exact HTTP status.
    #[arg(long)]
    pub status: Option<String>,
    /// Exact method.
    #[arg(long)]
    pub method: Option<String>,
    /// Path prefix.
    #[arg(long)]
    pub path_prefix: Option<String>,
    /// Exact principal.
    #[arg(long)]
    pub principal: Option<String>,
    /// Records per page, 1-1000.
    #[arg(long, default_value = "100")]
    pub limit: String,
    /// The `next_cursor` of the previous page.
    #[arg(long)]
    pub cursor: Option<String>,
}

impl ListArgs {
    /// The query parameters `GET /v1/requests` would get.
    pub fn params(&self) -> Vec<(String, String)> {
        [
            ("since", &self.since),
            ("until", &self.until),
            ("status", &self.status),
            ("method", &self.method),
            ("path_prefix", &self.path_prefix),
            ("principal", &self.principal),
            ("limit", &Some(self.limit.clone())),
            ("cursor", &self.cursor),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.as_ref().map(|v| (n.to_string(), v.clone())))
        .collect()
    }
}

/// `tollgate export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Received at or after (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Received before (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Ndjson)]
    pub format: ExportFormat,
    /// Records read per page, 1-1000.
    #[arg(long, default_value = "1000")]
    pub page_size: String,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One JSON record a line (newline-delimited JSON).
    Ndjson,
}

/// The settings `tollgate` reads, as documented (variable, flag, default, meaning): read once
/// from an empty environment, which reads every one of them.
pub fn setting_docs() -> Vec<SettingDoc> {
    let mut reader = SettingsReader::new(Vec::new(), Vec::new());
    let _ = IngressConfig::read(&mut reader);
    reader.docs().to_vec()
}

/// The full command: the derived subcommands plus one global option per setting.
pub fn command() -> clap::Command {
    command_with(&setting_docs())
}

fn command_with(docs: &[SettingDoc]) -> clap::Command {
    let mut cmd = Cli::command();
    for doc in docs {
        let long = flag_for(doc.env);
        let mut arg = Arg::new(doc.env)
            .long(long.trim_start_matches("--").to_string())
            .env(doc.env)
            .value_name("VALUE")
            .action(ArgAction::Set)
            .global(true)
            .help(doc.help)
            .help_heading("Settings (each also an environment variable)");
        if doc.default != "-" && !doc.default.is_empty() {
            arg = arg.default_value(doc.default.clone());
        }
        cmd = cmd.arg(arg);
    }
    cmd
}

/// A parsed command line: the command and the settings given on it or in the environment.
#[derive(Debug)]
pub struct Invocation {
    /// What to do.
    pub command: Command,
    /// The settings as `--name=value`, for [`SettingsReader`] (defaults left to it).
    pub setting_args: Vec<String>,
}

/// Parses `args` (with the program name first). clap's own errors (an unknown option, a missing
/// value) and `--help`/`--version` come back as `Err` to be printed with [`clap::Error::exit`].
pub fn parse<I, T>(args: I) -> Result<Invocation, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let docs = setting_docs();
    let mut cmd = command_with(&docs);
    let matches = cmd.try_get_matches_from_mut(args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    Ok(Invocation {
        command: cli.command.unwrap_or(Command::Serve),
        setting_args: setting_args(&matches, &docs),
    })
}

/// The settings given explicitly, from whichever (sub)command level they were written at.
fn setting_args(matches: &ArgMatches, docs: &[SettingDoc]) -> Vec<String> {
    let mut level = matches;
    // Global options propagate down: the innermost subcommand's matches hold them all.
    while let Some((_, sub)) = level.subcommand() {
        level = sub;
    }
    let mut out = Vec::new();
    for doc in docs {
        if matches!(level.value_source(doc.env), Some(ValueSource::CommandLine)) {
            if let Some(v) = level.get_one::<String>(doc.env) {
                out.push(format!("{}={v}", flag_for(doc.env)));
            }
        }
    }
    out
}

/// Writes the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    let mut cmd = command();
    clap_complete::generate(shell, &mut cmd, "tollgate", out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Invocation, clap::Error> {
        parse(std::iter::once("tollgate").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn serve_is_the_default_and_settings_go_anywhere() {
        let i = p(&[]).unwrap();
        assert!(matches!(i.command, Command::Serve));
        let i = p(&["--listen", "127.0.0.1:9"]).unwrap();
        assert_eq!(i.setting_args, vec!["--listen=127.0.0.1:9"]);
        let i = p(&["migrate", "--data-dir=/tmp/x"]).unwrap();
        assert!(matches!(i.command, Command::Migrate));
        assert_eq!(i.setting_args, vec!["--data-dir=/tmp/x"]);
        let i = p(&["--data-dir", "/d", "requests", "get", "r1"]).unwrap();
        assert!(matches!(i.command, Command::Requests(RequestsCommand::Get { ref request_id }) if request_id == "r1"));
        assert_eq!(i.setting_args, vec!["--data-dir=/d"]);
    }

    #[test]
    fn a_flag_never_swallows_the_next_one() {
        let e = p(&["--listen", "--data-dir", "/d"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue, "{e}");
    }

    #[test]
    fn version_help_and_unknowns_are_claps() {
        assert_eq!(
            p(&["--version"]).unwrap_err().kind(),
            clap::error::ErrorKind::DisplayVersion
        );
        assert_eq!(
            p(&["help", "migrate"]).unwrap_err().kind(),
            clap::error::ErrorKind::DisplayHelp
        );
        assert_eq!(
            p(&["--nope=1"]).unwrap_err().kind(),
            clap::error::ErrorKind::UnknownArgument
        );
        assert_eq!(
            p(&["frobnicate"]).unwrap_err().kind(),
            clap::error::ErrorKind::InvalidSubcommand
        );
    }

    #[test]
    fn help_shows_every_setting_with_its_real_default() {
        let help = command().render_long_help().to_string();
        for doc in setting_docs() {
            assert!(help.contains(&flag_for(doc.env)), "{} missing from --help", doc.env);
            assert!(help.contains(doc.env), "{} missing from --help", doc.env);
            if doc.default != "-" && !doc.default.is_empty() {
                assert!(
                    help.contains(&format!("[default: {}]", doc.default)),
                    "{}: {}",
                    doc.env,
                    doc.default
                );
            }
        }
    }

    #[test]
    fn list_arguments_become_the_apis_parameters() {
        let i = p(&["requests", "list", "--status", "404", "--path-prefix", "/v1"]).unwrap();
        let Command::Requests(RequestsCommand::List(args)) = i.command else {
            panic!("{:?}", i.command)
        };
        let params = args.params();
        assert!(params.contains(&("status".into(), "404".into())));
        assert!(params.contains(&("path_prefix".into(), "/v1".into())));
        assert!(params.contains(&("limit".into(), "100".into())));
    }

    #[test]
    fn completions_are_generated_for_every_shell() {
        for shell in clap_complete::Shell::value_variants() {
            let mut out = Vec::new();
            completions(*shell, &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("migrate") && text.contains("data-dir"), "{shell}");
        }
    }
}
