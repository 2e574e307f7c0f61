//! What a scenario requires of the kernel, checked against what each boot's kernel reports of
//! itself (its release, and its own config from /proc/config.gz): unmet, the scenario is skipped
//! with the reason, never run on a kernel it does not apply to.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Requires {
    /// Kernel options that must be `y` in every kernel the scenario boots (read in the guest from
    /// /proc/config.gz).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub config: Vec<Spanned<String>>,
    /// Minimum kernel version, e.g. "7.2" (LIVEUPDATE_SESSION_GET_NAME).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub kernel: Option<Spanned<String>>,
}

impl Requires {
    pub fn is_empty(&self) -> bool {
        self.config.is_empty() && self.kernel.is_none()
    }

    /// Why a kernel of `release` does not qualify by version.
    pub fn release_unmet(&self, release: &str) -> Option<String> {
        let min = &self.kernel.as_ref()?.value;
        (version_tuple(release) < version_tuple(min))
            .then(|| format!("requires kernel >= {min}, running {release}"))
    }

    /// The options of `requires.config` that `config` (a .config's text) does not set to y.
    pub fn config_unmet(&self, config: &str) -> Vec<String> {
        let cfg = luo_kernels::config::parse_dot_config(config);
        self.config
            .iter()
            .map(|o| o.value.trim_start_matches("CONFIG_"))
            .filter(|sym| cfg.get(*sym).map(String::as_str) != Some("y"))
            .map(|sym| format!("requires CONFIG_{sym}=y, which this kernel lacks"))
            .collect()
    }
}

pub fn version_tuple(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(3)
        .filter_map(|s| s.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_options_are_checked() {
        let r: Requires = serde_saphyr::from_str(
            "config: [CONFIG_LIVEUPDATE_MEMFD, KEXEC_FILE]\nkernel: \"7.2\"\n",
        )
        .unwrap();
        assert_eq!(r.release_unmet("7.3.4"), None);
        assert_eq!(r.release_unmet("7.2.0-rc1"), None);
        assert!(r.release_unmet("6.19.3").unwrap().contains(">= 7.2"));
        let unmet = r.config_unmet("CONFIG_LIVEUPDATE_MEMFD=y\n# CONFIG_KEXEC_FILE is not set\n");
        assert_eq!(
            unmet,
            ["requires CONFIG_KEXEC_FILE=y, which this kernel lacks"]
        );
        assert!(
            r.config_unmet("CONFIG_LIVEUPDATE_MEMFD=y\nCONFIG_KEXEC_FILE=y\n")
                .is_empty()
        );
    }
}
