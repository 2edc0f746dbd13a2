//! The tenant context: who a client's tenant is, and what the server must be told.
//!
//! - [`id`]: tenant ids and the pattern they must match before they reach SQL;
//! - [`setting`]: the server setting RLS policies read, and the statement that sets it;
//! - [`scan`]: spotting client statements that may change or reset that setting;
//! - [`inline`]: when the SET may run inside the client's own transaction.
//!
//! The invariant the pooler keeps: no statement of a client runs on a server
//! connection whose setting is not that client's tenant (or empty, for a client
//! without one). Each server connection carries a [`ServerTenant`] belief that is
//! only `Known` while nothing could have changed the setting behind our back.

pub mod guard;
pub mod id;
pub mod inline;
pub mod scan;
pub mod setting;
pub mod signed;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use thiserror::Error;

pub use id::{TenantId, TenantPattern};
pub use scan::SettingScanner;
pub use setting::SettingName;

use crate::config::{TenantConfig, TenantSource};
use crate::protocol::{frontend, HEADER_LEN};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TenantError {
    #[error("no tenant given: connect as user \"<user>.<tenant>\"")]
    Missing,
    #[error("invalid tenant id \"{shown}\": it must match {pattern}")]
    Invalid { shown: String, pattern: String },
}

/// One client's tenant SET: the Query, and the name of the statement it is
/// prepared as on servers ([`TenantPolicy::set_statement_name`]), so that no
/// transaction formats either.
pub struct ClientSet {
    pub message: Bytes,
    pub statement: Option<Arc<str>>,
}

/// A tenant-scoped database's rules, built once from its config.
#[derive(Debug)]
pub struct TenantPolicy {
    source: TenantSource,
    pub setting: SettingName,
    pattern: TenantPattern,
    pub affinity: bool,
    required: bool,
    scanner: SettingScanner,
    signed: Option<signed::SignedContext>,
    guard: Option<guard::Guard>,
    /// Starts the names of the SET statements prepared on servers (see
    /// [`Self::set_statement_name`]); unique to this policy, so a reload that
    /// changes the setting never finds the old statement under a new name.
    statement_prefix: Box<str>,
}

/// Policies built so far in this process, for [`TenantPolicy::statement_prefix`].
static POLICIES: AtomicU64 = AtomicU64::new(0);

/// PostgreSQL keeps 63 bytes of a prepared statement's name (NAMEDATALEN - 1):
/// two longer names with the same start would be one statement.
const MAX_STATEMENT_NAME: usize = 63;

impl TenantPolicy {
    /// Builds the policy; the config was validated, so errors here are reported the same way.
    pub fn new(config: &TenantConfig) -> Result<Self, String> {
        let setting = SettingName::parse(&config.setting).map_err(|e| e.to_string())?;
        let pattern = TenantPattern::new(&config.pattern).map_err(|e| e.to_string())?;
        let scanner = SettingScanner::new(&setting);
        let setting_for_guard = setting.clone();
        let signed = match (config.signed_context, &config.signing_key) {
            (true, Some(key)) => Some(signed::SignedContext::new(key)),
            (true, None) => return Err("signed_context = true needs a signing_key".into()),
            (false, _) => None,
        };
        Ok(TenantPolicy {
            source: config.source,
            setting,
            pattern,
            affinity: config.affinity,
            required: config.required,
            scanner,
            signed,
            guard: config
                .guard
                .then(|| guard::Guard::new(&setting_for_guard, config.allow_do_blocks)),
            statement_prefix: format!(
                "{}{}_",
                crate::relay::prepared::TENANT_SET_PREFIX,
                POLICIES.fetch_add(1, Ordering::Relaxed)
            )
            .into(),
        })
    }

    pub fn source(&self) -> TenantSource {
        self.source
    }

    /// Checks a tenant id from another source (a JWT claim) against the pattern.
    pub fn check(&self, candidate: &str) -> Result<TenantId, TenantError> {
        self.pattern.check(candidate)
    }

    /// Splits the user name from the startup packet into the pooler user and the tenant.
    pub fn resolve<'a>(
        &self,
        startup_user: &'a str,
    ) -> Result<(&'a str, Option<TenantId>), TenantError> {
        match self.source {
            TenantSource::UserSuffix => match startup_user.rsplit_once('.') {
                Some((user, tenant)) => Ok((user, Some(self.pattern.check(tenant)?))),
                None if self.required => Err(TenantError::Missing),
                None => Ok((startup_user, None)),
            },
            // The tenant comes from the token, once it is verified.
            TenantSource::Jwt => Ok((startup_user, None)),
        }
    }

    /// What a client of `tenant` sends to enter it, made once per client (and
    /// again after a reload changes the policy).
    pub fn client_set(&self, tenant: Option<&TenantId>) -> ClientSet {
        ClientSet {
            message: self.set_message(tenant),
            statement: self.set_statement_name(tenant).map(Arc::from),
        }
    }

    /// The pipelined Query that puts `tenant` (or the empty string) into the setting.
    pub fn set_message(&self, tenant: Option<&TenantId>) -> Bytes {
        self.setting
            .set_message(tenant.map(TenantId::as_str).unwrap_or(""))
    }

    /// The SET as Parse, Bind and Execute without Sync, to run at the head of the
    /// client's next statement (see [`inline`]), made from `set`, the client's
    /// [`Self::set_message`], so that nothing is formatted per transaction. `None`
    /// when the context is signed: entering it is a function call, whose snapshot
    /// would come too early for `BEGIN ISOLATION LEVEL ...`.
    pub fn unsynced_set_message(&self, set: &[u8]) -> Option<Bytes> {
        if self.signed.is_some() {
            return None;
        }
        let sql = frontend::query_text(set.get(HEADER_LEN..)?);
        let mut buf = BytesMut::with_capacity(sql.len() + 32);
        frontend::unsynced_statement(&mut buf, sql);
        Some(buf.freeze())
    }

    /// The name under which the SET for `tenant` is prepared on a server, so that
    /// later transactions send only Bind and Execute: PostgreSQL then skips
    /// parsing the SET and building a plan cache entry for it, about half its
    /// cost. `None` when the context is signed (no inline SET) or the name would
    /// not fit in PostgreSQL's 63 bytes.
    pub fn set_statement_name(&self, tenant: Option<&TenantId>) -> Option<String> {
        let tenant = tenant.map(TenantId::as_str).unwrap_or("");
        if self.signed.is_some() || self.statement_prefix.len() + tenant.len() > MAX_STATEMENT_NAME
        {
            return None;
        }
        let mut name = String::with_capacity(self.statement_prefix.len() + tenant.len());
        name.push_str(&self.statement_prefix);
        name.push_str(tenant);
        Some(name)
    }

    /// Writes the SET as the prepared statement `name`: its Parse (from `set`, the
    /// client's [`Self::set_message`]) when `parse`, then Bind and Execute, no Sync.
    pub fn put_unsynced_named_set(&self, buf: &mut BytesMut, name: &str, set: &[u8], parse: bool) {
        let sql = parse.then(|| set.get(HEADER_LEN..).map(frontend::query_text));
        frontend::unsynced_named_statement(buf, name.as_bytes(), sql.flatten());
    }

    /// The tenant-context guard, unless turned off.
    #[inline]
    pub fn guard(&self) -> Option<&guard::Guard> {
        self.guard.as_ref()
    }

    /// Whether the tenant must be entered with a signature bound to the backend.
    pub fn is_signed(&self) -> bool {
        self.signed.is_some()
    }

    /// The pipelined Query that makes a server hold `tenant`: the plain SET
    /// (`plain`, built once per client), or with the signed context
    /// `tenantpool.enter(...)` for this backend plus the SET. `None` when the
    /// context is signed but the backend's identity is unknown.
    pub fn tenant_message(
        &self,
        tenant: Option<&TenantId>,
        plain: &Bytes,
        identity: Option<signed::BackendIdentity>,
    ) -> Option<Bytes> {
        match &self.signed {
            None => Some(plain.clone()),
            Some(ctx) => identity.map(|id| {
                ctx.enter_message(
                    &self.setting,
                    tenant.map(TenantId::as_str).unwrap_or(""),
                    id,
                )
            }),
        }
    }

    /// True when `sql` may change the setting for the rest of the session.
    #[inline]
    pub fn may_change_setting(&self, sql: &[u8]) -> bool {
        self.scanner.may_change_setting(sql)
    }
}

/// What the pooler believes a server connection's tenant setting holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ServerTenant {
    /// Never set by us, or something may have changed it since.
    #[default]
    Unknown,
    /// Set by us to this tenant (`None`: the empty string) and not touched since.
    Known(Option<Arc<str>>),
}

impl ServerTenant {
    /// Whether this server needs no SET before running statements of a client of `tenant`.
    #[inline]
    pub fn matches(&self, tenant: Option<&TenantId>) -> bool {
        match self {
            ServerTenant::Unknown => false,
            ServerTenant::Known(known) => known.as_deref() == tenant.map(TenantId::as_str),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(required: bool) -> TenantPolicy {
        TenantPolicy::new(&{
            let mut t = TenantConfig::new(TenantSource::UserSuffix);
            t.required = required;
            t
        })
        .unwrap()
    }

    #[test]
    fn the_unsynced_set_is_the_query_set_as_parse_bind_execute() {
        let p = policy(true);
        let (_, tenant) = p.resolve("app.acme").unwrap();
        let set = p.set_message(tenant.as_ref());
        let unsynced = p.unsynced_set_message(&set).unwrap();
        let sql = b"SET app.current_tenant = E'acme'";
        let mut expected = vec![b'P'];
        expected.extend_from_slice(&(4 + 1 + sql.len() as i32 + 1 + 2).to_be_bytes());
        expected.push(0);
        expected.extend_from_slice(sql);
        expected.extend_from_slice(&[0, 0, 0]);
        expected.extend_from_slice(b"B\0\0\0\x0c\0\0\0\0\0\0\0\0");
        expected.extend_from_slice(b"E\0\0\0\x09\0\0\0\0\0");
        assert_eq!(&unsynced[..], &expected[..]);
        assert_eq!(p.unsynced_set_message(b"Q\0"), None, "not a message");
    }

    #[test]
    fn the_named_set_is_parsed_under_a_name_of_this_policy_then_only_bound() {
        let p = policy(true);
        let (_, tenant) = p.resolve("app.acme").unwrap();
        let set = p.set_message(tenant.as_ref());
        let name = p.set_statement_name(tenant.as_ref()).unwrap();
        assert!(name.starts_with("tps") && name.ends_with("_acme"), "{name}");
        let again = policy(true).set_statement_name(tenant.as_ref()).unwrap();
        assert_ne!(
            name, again,
            "another policy (a reload) names its statements anew"
        );

        let bind_execute = |name: &str| {
            let mut m = vec![b'B'];
            m.extend_from_slice(&(4 + 1 + name.len() as i32 + 1 + 6).to_be_bytes());
            m.push(0);
            m.extend_from_slice(name.as_bytes());
            m.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
            m.extend_from_slice(b"E\0\0\0\x09\0\0\0\0\0");
            m
        };
        let sql = b"SET app.current_tenant = E'acme'";
        let mut expected = vec![b'P'];
        expected.extend_from_slice(
            &(4 + name.len() as i32 + 1 + sql.len() as i32 + 1 + 2).to_be_bytes(),
        );
        expected.extend_from_slice(name.as_bytes());
        expected.push(0);
        expected.extend_from_slice(sql);
        expected.extend_from_slice(&[0, 0, 0]);
        expected.extend_from_slice(&bind_execute(&name));
        let mut first = BytesMut::new();
        p.put_unsynced_named_set(&mut first, &name, &set, true);
        assert_eq!(&first[..], &expected[..]);
        let mut later = BytesMut::new();
        p.put_unsynced_named_set(&mut later, &name, &set, false);
        assert_eq!(&later[..], &bind_execute(&name)[..]);

        // PostgreSQL would cut a longer name, and two tenants could meet in it.
        let fits = "a".repeat(63 - name.len() + "acme".len());
        let (_, long) = p.resolve(&format!("app.{fits}")).unwrap();
        assert_eq!(p.set_statement_name(long.as_ref()).unwrap().len(), 63);
        let (_, longer) = p.resolve(&format!("app.{fits}b")).unwrap();
        assert_eq!(p.set_statement_name(longer.as_ref()), None);
    }

    #[test]
    fn splits_at_last_dot() {
        let p = policy(true);
        let (user, tenant) = p.resolve("app.acme").unwrap();
        assert_eq!(user, "app");
        assert_eq!(tenant.unwrap().as_str(), "acme");
        let (user, tenant) = p.resolve("my.app.globex").unwrap();
        assert_eq!((user, tenant.unwrap().as_str()), ("my.app", "globex"));
        assert_eq!(p.resolve("app"), Err(TenantError::Missing));
        assert!(matches!(
            p.resolve("app.a'b"),
            Err(TenantError::Invalid { .. })
        ));
        assert!(matches!(
            p.resolve("app."),
            Err(TenantError::Invalid { .. })
        ));
        let (user, tenant) = policy(false).resolve("app").unwrap();
        assert_eq!((user, tenant), ("app", None));
    }

    #[test]
    fn server_tenant_matching() {
        let p = policy(true);
        let acme = p.resolve("app.acme").unwrap().1;
        assert!(!ServerTenant::Unknown.matches(acme.as_ref()));
        assert!(!ServerTenant::Unknown.matches(None));
        assert!(ServerTenant::Known(Some("acme".into())).matches(acme.as_ref()));
        assert!(!ServerTenant::Known(Some("globex".into())).matches(acme.as_ref()));
        assert!(!ServerTenant::Known(None).matches(acme.as_ref()));
        assert!(ServerTenant::Known(None).matches(None));
    }
}
