//! Startup parameters that would set the tenant setting or the role.

use super::{Guard, ROLE, SESSION_AUTHORIZATION};
use crate::protocol::startup::option_settings;

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

    /// The `options` startup parameter: whether a `-c`/`--` setting (or a bare
    /// word, which the server would refuse) names a guarded setting.
    pub(super) fn options_set_guarded(&self, options: &[u8]) -> bool {
        option_settings(options).iter().any(|(_, setting)| {
            let name = setting.split(|&b| b == b'=').next().unwrap_or(setting);
            self.is_guarded_name(name)
        })
    }
}
