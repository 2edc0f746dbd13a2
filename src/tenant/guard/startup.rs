//! Startup parameters that would set the tenant setting or the role.

use super::{Guard, ROLE, SESSION_AUTHORIZATION};
use crate::protocol::startup::split_options;

impl Guard {
    /// A startup parameter or `-c` name that sets the setting or the role.
    pub(super) fn is_guarded_name(&self, name: &[u8]) -> bool {
        let name = name.trim_ascii();
        [&self.setting[..], ROLE, SESSION_AUTHORIZATION]
            .iter()
            .any(|target| {
                target.len() == name.len()
                    && name.iter().zip(target.iter()).all(|(&a, &t)| {
                        let a = if a == b'-' {
                            b'_'
                        } else {
                            a.to_ascii_lowercase()
                        };
                        a == t
                    })
            })
    }

    /// The `options` startup parameter, read as PostgreSQL's `pg_split_opts` and
    /// `process_postgres_switches` do.
    pub(super) fn options_set_guarded(&self, options: &[u8]) -> bool {
        // getopt letters that take an argument: "B:bC:c:D:d:EeFf:h:ijk:lN:nOPp:r:S:sTt:v:W:-:"
        const WITH_ARG: &[u8] = b"BCcDdfhkNprStvW-";
        let args = split_options(options);
        let assigns = |arg: &[u8]| {
            let name = arg.split(|&b| b == b'=').next().unwrap_or(arg);
            self.is_guarded_name(name)
        };
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            i += 1;
            if arg.len() < 2 || arg[0] != b'-' {
                // Not an option (the server refuses it); checked anyway.
                if assigns(arg) {
                    return true;
                }
                continue;
            }
            for (j, &flag) in arg.iter().enumerate().skip(1) {
                if !WITH_ARG.contains(&flag) {
                    continue;
                }
                let value: &[u8] = if j + 1 < arg.len() {
                    &arg[j + 1..]
                } else {
                    i += 1;
                    args.get(i - 1).map_or(&[], |v| &v[..])
                };
                if matches!(flag, b'c' | b'-') && assigns(value) {
                    return true;
                }
                break;
            }
        }
        false
    }
}
