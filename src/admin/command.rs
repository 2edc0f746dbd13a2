//! Parsing console input: a query string split into statements at `;`, each
//! statement one command. Keywords are case-insensitive; a database name is a
//! bare word (taken as written) or a double-quoted identifier.

/// A view `SHOW` can display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Help,
    Pools,
    Stats,
    Clients,
    Servers,
    Databases,
    Config,
    Tenants,
    Version,
    Lists,
    State,
}

impl View {
    pub const ALL: [View; 11] = [
        View::Help,
        View::Pools,
        View::Stats,
        View::Clients,
        View::Servers,
        View::Databases,
        View::Config,
        View::Tenants,
        View::Version,
        View::Lists,
        View::State,
    ];

    pub fn name(self) -> &'static str {
        match self {
            View::Help => "HELP",
            View::Pools => "POOLS",
            View::Stats => "STATS",
            View::Clients => "CLIENTS",
            View::Servers => "SERVERS",
            View::Databases => "DATABASES",
            View::Config => "CONFIG",
            View::Tenants => "TENANTS",
            View::Version => "VERSION",
            View::Lists => "LISTS",
            View::State => "STATE",
        }
    }

    /// One line for SHOW HELP.
    pub fn describe(self) -> &'static str {
        match self {
            View::Help => "this list",
            View::Pools => "one row per pool: clients active and waiting, servers active, idle and logging in, longest wait",
            View::Stats => "one row per pool: transaction, tenant SET, wait-timeout and server-connect counters since start",
            View::Clients => "one row per client connection: user, database, tenant, state, address, wait, server used",
            View::Servers => "one row per server connection: database, state, backend pid, tenant its setting holds, client using it",
            View::Databases => "one row per configured database: server address, pool size and mode, tenant source, paused",
            View::Config => "every configuration key with its value, default and whether RELOAD changes it (secrets shown as <set>)",
            View::Tenants => "one row per tenant and database: its clients active and waiting, servers in use by it and idle ones set to it",
            View::Version => "the tenantpool version",
            View::Lists => "counts of databases, users, pools, clients and servers",
            View::State => "phase (running, draining), start time, uptime, reloads",
        }
    }
}

/// One console command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Show(View),
    Pause(Option<String>),
    Resume(Option<String>),
    Reload,
    Kill(String),
    Shutdown,
}

impl Command {
    /// The CommandComplete tag, as PgBouncer answers.
    pub fn tag(&self) -> &'static str {
        match self {
            Command::Show(_) => "SHOW",
            Command::Pause(_) => "PAUSE",
            Command::Resume(_) => "RESUME",
            Command::Reload => "RELOAD",
            Command::Kill(_) => "KILL",
            Command::Shutdown => "SHUTDOWN",
        }
    }
}

/// Commands other than SHOW, with their syntax and meaning, for SHOW HELP and errors.
pub const ACTIONS: [(&str, &str); 5] = [
    ("PAUSE [db]", "stop lending server connections (to db, or all); returns once transactions in progress have finished"),
    ("RESUME [db]", "lend server connections again after PAUSE or KILL"),
    ("RELOAD", "re-read and validate the configuration file; on error the old configuration stays"),
    ("KILL db", "close every client and server connection of db; new clients wait until RESUME"),
    ("SHUTDOWN", "stop accepting clients, let transactions in progress finish (shutdown_timeout), then exit"),
];

/// The one-line list of valid commands, for error messages.
pub fn synopsis() -> String {
    let views: Vec<&str> = View::ALL.iter().map(|v| v.name()).collect();
    let actions: Vec<&str> = ACTIONS.iter().map(|(syntax, _)| *syntax).collect();
    format!("SHOW {}, {}", views.join("|"), actions.join(", "))
}

/// Why a statement is not a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A bare word, as written.
    Word(String),
    /// A double-quoted identifier or single-quoted string, unescaped.
    Quoted(String),
    Semicolon,
}

impl Token {
    fn show(&self) -> String {
        match self {
            Token::Word(w) => w.clone(),
            Token::Quoted(q) => format!("\"{}\"", q.replace('"', "\"\"")),
            Token::Semicolon => ";".into(),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            ';' => tokens.push(Token::Semicolon),
            '-' if text[at..].starts_with("--") => {
                // A comment runs to the end of the line.
                while chars.next_if(|&(_, c)| c != '\n').is_some() {}
            }
            '/' if text[at..].starts_with("/*") => {
                let end = text[at + 2..]
                    .find("*/")
                    .ok_or_else(|| ParseError("unterminated /* comment".into()))?;
                let resume = at + 2 + end + 2;
                while chars.next_if(|&(i, _)| i < resume).is_some() {}
            }
            q @ ('"' | '\'') => {
                let mut value = String::new();
                loop {
                    match chars.next() {
                        // A doubled quote stands for itself.
                        Some((_, c)) if c == q && chars.next_if(|&(_, c)| c == q).is_some() => {
                            value.push(q)
                        }
                        Some((_, c)) if c == q => break,
                        Some((_, c)) => value.push(c),
                        None => {
                            return Err(ParseError(format!(
                                "unterminated quoted {}",
                                if q == '"' { "identifier" } else { "string" }
                            )))
                        }
                    }
                }
                tokens.push(Token::Quoted(value));
            }
            c => {
                let mut word = String::from(c);
                while let Some((_, c)) =
                    chars.next_if(|&(_, c)| !c.is_whitespace() && !matches!(c, ';' | '"' | '\''))
                {
                    word.push(c);
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

/// Parses a query string into its commands, in order. An empty result means an
/// empty query (nothing but blanks, comments and semicolons).
pub fn parse(text: &str) -> Result<Vec<Command>, ParseError> {
    tokenize(text)?
        .split(|t| *t == Token::Semicolon)
        .filter(|s| !s.is_empty())
        .map(parse_statement)
        .collect()
}

fn parse_statement(tokens: &[Token]) -> Result<Command, ParseError> {
    let text = || tokens.iter().map(Token::show).collect::<Vec<_>>().join(" ");
    let unknown = || {
        ParseError(format!(
            "unknown admin command \"{}\"; valid commands: {}",
            text(),
            synopsis()
        ))
    };
    let Some(Token::Word(verb)) = tokens.first() else {
        return Err(unknown());
    };
    let verb = verb.to_ascii_uppercase();
    let args = &tokens[1..];
    let no_args = |command: Command| {
        if args.is_empty() {
            Ok(command)
        } else {
            Err(ParseError(format!(
                "{verb} takes no arguments (got \"{}\")",
                text()
            )))
        }
    };
    let database = |required: bool| -> Result<Option<String>, ParseError> {
        match args {
            [] if !required => Ok(None),
            [] => Err(ParseError(format!(
                "{verb} needs a database name: {verb} db"
            ))),
            [Token::Word(name) | Token::Quoted(name)] => Ok(Some(name.clone())),
            _ => Err(ParseError(format!(
                "{verb} takes one database name (got \"{}\")",
                text()
            ))),
        }
    };
    match verb.as_str() {
        "SHOW" => match args {
            [Token::Word(view)] => View::ALL
                .into_iter()
                .find(|v| v.name().eq_ignore_ascii_case(view))
                .map(Command::Show)
                .ok_or_else(|| {
                    ParseError(format!(
                        "unknown view \"{view}\" for SHOW; valid: SHOW {}",
                        View::ALL.map(View::name).join("|")
                    ))
                }),
            _ => Err(ParseError(format!(
                "SHOW needs one view name: SHOW {}",
                View::ALL.map(View::name).join("|")
            ))),
        },
        "PAUSE" => database(false).map(Command::Pause),
        "RESUME" => database(false).map(Command::Resume),
        "KILL" => database(true).map(|d| Command::Kill(d.unwrap_or_default())),
        "RELOAD" => no_args(Command::Reload),
        "SHUTDOWN" => no_args(Command::Shutdown),
        _ => Err(unknown()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_case() {
        assert_eq!(parse("show pools").unwrap(), [Command::Show(View::Pools)]);
        assert_eq!(
            parse("  SHOW   Tenants ;").unwrap(),
            [Command::Show(View::Tenants)]
        );
        assert_eq!(parse("pause").unwrap(), [Command::Pause(None)]);
        assert_eq!(
            parse("PAUSE app;").unwrap(),
            [Command::Pause(Some("app".into()))]
        );
        assert_eq!(
            parse("resume \"My;Db\"\"x\"").unwrap(),
            [Command::Resume(Some("My;Db\"x".into()))]
        );
        assert_eq!(parse("kill App").unwrap(), [Command::Kill("App".into())]);
        assert_eq!(parse("Reload").unwrap(), [Command::Reload]);
        assert_eq!(parse("shutdown;").unwrap(), [Command::Shutdown]);
    }

    #[test]
    fn several_statements_comments_and_empty() {
        assert_eq!(
            parse("SHOW POOLS; -- a comment; SHOW STATS\n ;; /* SHOW CLIENTS; */ show version")
                .unwrap(),
            [Command::Show(View::Pools), Command::Show(View::Version)]
        );
        assert!(parse("").unwrap().is_empty());
        assert!(parse(" ; ;\n-- nothing").unwrap().is_empty());
    }

    #[test]
    fn errors_say_what_is_valid() {
        let e = parse("SELECT 1").unwrap_err().0;
        assert!(e.contains("unknown admin command \"SELECT 1\""), "{e}");
        assert!(e.contains("SHOW HELP|POOLS"), "{e}");
        assert!(e.contains("KILL db"), "{e}");
        let e = parse("show nothing").unwrap_err().0;
        assert!(e.contains("unknown view \"nothing\""), "{e}");
        assert!(parse("SHOW")
            .unwrap_err()
            .0
            .contains("SHOW needs one view name"));
        assert!(parse("KILL")
            .unwrap_err()
            .0
            .contains("KILL needs a database name"));
        assert!(parse("PAUSE a b").is_err());
        assert!(parse("RELOAD now").is_err());
        assert!(parse("PAUSE \"open").is_err());
        assert!(parse("/* open").is_err());
        // A later statement's error fails the whole string, as PostgreSQL's parser does.
        assert!(parse("SHOW POOLS; BOGUS").is_err());
    }
}
