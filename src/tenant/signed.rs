//! The signed tenant context (see `sql/tenantpool.sql`): instead of only setting
//! the tenant, the pooler calls `tenantpool.enter(tenant, nonce, signature)`,
//! where the signature is HMAC-SHA256 over the backend's pid and start time, a
//! nonce that only grows, and the tenant. The database keeps the newest nonce
//! per backend, so a signature read from a log or from `pg_stat_activity` is
//! worthless on any other backend and, once used, on its own.

use std::sync::atomic::{AtomicI64, Ordering};

use bytes::{Bytes, BytesMut};
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::{setting, SettingName};
use crate::protocol::frontend;

type HmacSha256 = hmac::Hmac<Sha256>;

/// What a server connection needs known for the pooler to sign for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendIdentity {
    pub pid: i32,
    /// `backend_start` in microseconds since the Unix epoch, as the database computes it.
    pub start_us: i64,
}

/// The query that reads a fresh server connection's [`BackendIdentity`] start time.
pub const BACKEND_START_QUERY: &str =
    "SELECT (extract(epoch FROM backend_start) * 1000000)::bigint \
     FROM pg_stat_activity WHERE pid = pg_backend_pid()";

#[derive(Clone)]
pub struct SignedContext {
    key: Vec<u8>,
}

impl std::fmt::Debug for SignedContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignedContext { key: <hidden> }")
    }
}

/// Nonces: microseconds since the epoch, strictly increasing within the process,
/// so they also keep growing across pooler restarts.
static LAST_NONCE: AtomicI64 = AtomicI64::new(0);

fn next_nonce() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let mut last = LAST_NONCE.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST_NONCE.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

impl SignedContext {
    pub fn new(key: &str) -> Self {
        SignedContext {
            key: key.as_bytes().to_vec(),
        }
    }

    /// HMAC-SHA256 of `message`, hex.
    fn sign(&self, message: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(message.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// The Query that enters `tenant` on the backend `id` and sets the plain setting
    /// to match, so code reading `current_setting` keeps working.
    pub fn enter_message(&self, setting: &SettingName, tenant: &str, id: BackendIdentity) -> Bytes {
        let nonce = next_nonce();
        let signature = self.sign(&format!("v1|{}|{}|{nonce}|{tenant}", id.pid, id.start_us));
        let literal = setting::literal(tenant);
        let sql = format!(
            "SELECT tenantpool.enter({literal}, {nonce}, '{signature}'); SET {} = {literal}",
            setting.as_str()
        );
        let mut buf = BytesMut::with_capacity(sql.len() + 6);
        frontend::query(&mut buf, &sql);
        buf.freeze()
    }

    /// HMAC's inner and outer padded keys (hex), which is what the database stores.
    pub fn padded_keys(&self) -> (String, String) {
        let mut block = [0u8; 64];
        if self.key.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(&self.key));
        } else {
            block[..self.key.len()].copy_from_slice(&self.key);
        }
        let ipad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
        (hex(&ipad), hex(&opad))
    }
}

/// The install script (`sql/tenantpool.sql`).
pub const INSTALL_SQL: &str = include_str!("../../sql/tenantpool.sql");

/// The install script for one database of `config`, with its psql variables set,
/// ready to pipe into `psql` as a superuser.
pub fn install_script(config: &crate::config::Config, database: &str) -> Result<String, String> {
    let db = config
        .databases
        .get(database)
        .ok_or_else(|| format!("no database \"{database}\" in the configuration"))?;
    let key = db
        .tenant
        .as_ref()
        .filter(|t| t.signed_context)
        .and_then(|t| t.signing_key.as_deref())
        .ok_or_else(|| {
            format!("databases.{database}.tenant has no signed_context = true with a signing_key")
        })?;
    let (ipad, opad) = SignedContext::new(key).padded_keys();
    Ok(format!(
        "\\set k_ipad '{ipad}'\n\\set k_opad '{opad}'\n\\set app_role '{}'\n{INSTALL_SQL}",
        db.user.replace('\'', "''")
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_keys_reproduce_the_hmac() {
        // The database computes sha256(k_opad || sha256(k_ipad || m)); it must equal HMAC(key, m).
        for key in ["k".repeat(40), "x".repeat(100)] {
            let ctx = SignedContext::new(&key);
            let (ipad, opad) = ctx.padded_keys();
            let unhex = |s: &str| {
                (0..s.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                    .collect::<Vec<u8>>()
            };
            let m = "v1|42|1700000000000000|1|acme";
            let inner = Sha256::digest([unhex(&ipad), m.as_bytes().to_vec()].concat());
            let outer = Sha256::digest([unhex(&opad), inner.to_vec()].concat());
            assert_eq!(hex(&outer), ctx.sign(m));
        }
    }

    #[test]
    fn nonces_grow() {
        let a = next_nonce();
        let b = next_nonce();
        assert!(b > a);
    }

    #[test]
    fn enter_message_is_one_query() {
        let ctx = SignedContext::new(&"k".repeat(32));
        let setting = SettingName::parse("app.current_tenant").unwrap();
        let m = ctx.enter_message(
            &setting,
            "acme",
            BackendIdentity {
                pid: 7,
                start_us: 9,
            },
        );
        let text = std::str::from_utf8(&m[5..m.len() - 1]).unwrap();
        assert!(
            text.starts_with("SELECT tenantpool.enter(E'acme', "),
            "{text}"
        );
        assert!(
            text.ends_with("; SET app.current_tenant = E'acme'"),
            "{text}"
        );
    }
}
