//! Command-line flags of `kahuna shell`.

use std::path::PathBuf;

/// Output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned, for people. Values quoted; errors on stderr.
    #[default]
    Table,
    /// One JSON document per command on stdout, errors included
    /// (`{"error":{"code":...,"message":...}}`).
    Json,
    /// Bare values for pipes: the value bytes as they are; errors on stderr.
    Raw,
}

/// Flags of `kahuna shell`.
///
/// With `-c`, `-f`, or when stdin is not a terminal, the shell runs the commands as a
/// script (one per line or separated by `;`, `#` comments), stops at the first failed
/// command, and exits 0 when all succeeded, 1 when a command failed, 2 when the script
/// does not parse (nothing runs) or the shell cannot start. Otherwise it is an
/// interactive REPL.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct ShellArgs {
    /// Nodes to talk to, tried in order when one is down.
    #[arg(
        long,
        value_name = "HOST:PORT[,...]",
        env = "KAHUNA_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2070"
    )]
    pub endpoints: Vec<String>,

    /// Runs these commands (separated by `;` or newlines) and exits.
    #[arg(short = 'c', long = "command", value_name = "CMDS", conflicts_with = "file")]
    pub command: Option<String>,

    /// Runs the commands in FILE (`-` for stdin) and exits.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, env = "KAHUNA_FORMAT", default_value_t = Format::Table)]
    pub format: Format,

    /// Budget of one attempt of each call, in milliseconds.
    #[arg(
        long = "timeout",
        value_name = "MS",
        env = "KAHUNA_TIMEOUT",
        default_value_t = kahuna_client::TIMEOUT_MS_DEFAULT
    )]
    pub timeout_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        shell: ShellArgs,
    }

    fn parse(args: &[&str]) -> Result<ShellArgs, clap::Error> {
        let mut argv = vec!["kahuna-shell"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|cli| cli.shell)
    }

    #[test]
    fn flags() {
        let args = parse(&["--endpoints", "a:1,b:2", "-c", "get k", "--format", "json", "--timeout", "250"])
            .expect("valid flags");
        assert_eq!(args.endpoints, ["a:1", "b:2"]);
        assert_eq!(args.command.as_deref(), Some("get k"));
        assert_eq!(args.format, Format::Json);
        assert_eq!(args.timeout_ms, 250);
        assert!(parse(&["-c", "x", "-f", "y"]).is_err(), "-c and -f conflict");
        assert!(parse(&["--format", "xml"]).is_err());
        assert!(parse(&["--timeout", "-1"]).is_err());
    }
}
