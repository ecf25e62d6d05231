//! The kernel modules an initramfs carries, as two text files in the formats `depmod` writes,
//! under `lib/modules/<release>/` (so busybox `modprobe` in the emergency shell reads them too):
//!
//! - `modules.dep`: `kernel/drivers/usb/host/xhci-pci.ko: kernel/drivers/usb/host/xhci-hcd.ko
//!   kernel/drivers/usb/core/usbcore.ko ...`, one line per carried module, every dependency
//!   (transitively) after the colon, the ones loaded last first (`modprobe` loads the list from
//!   the end, then the module);
//! - `modules.alias`: `alias pci:v00001B36d0000000Dsv*sd*bc*sc*i* xhci_pci`, the `alias=` fields
//!   of the carried modules' `.modinfo`: glob patterns (`*`, `?`, `[...]`) matched against a
//!   device's `modalias`.
//!
//! The builder renders both from the kernel package (builder/src/kernel.rs); oa-init parses them
//! for coldplug (init/src/coldplug.rs). Only parsing and rendering live here.

/// The folder of a kernel's modules inside the initramfs: `lib/modules/<release>`.
pub fn dir(release: &str) -> String {
    format!("{}/{release}", crate::initramfs_paths::MODULES_DIR)
}

/// File name of the dependency list, in [`dir`].
pub const DEP_FILE: &str = "modules.dep";
/// File name of the alias list, in [`dir`].
pub const ALIAS_FILE: &str = "modules.alias";

/// Module names use `_` and `-` interchangeably; the kernel reports `_`. Also strips a
/// `.ko`/`.ko.xz`/`.ko.zst`/`.ko.gz` suffix and any folder.
pub fn normalize(name: &str) -> String {
    let base = name.trim().rsplit('/').next().unwrap_or("");
    let base = [".ko.xz", ".ko.zst", ".ko.gz", ".ko"].iter().find_map(|s| base.strip_suffix(s)).unwrap_or(base);
    base.replace('-', "_")
}

/// One line of `modules.dep`: a module file and its dependencies (paths relative to [`dir`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    pub path: String,
    /// Every dependency, transitively; load them from the last to the first, then `path`.
    pub deps: Vec<String>,
}

impl Dep {
    /// The module's name ([`normalize`] of its file name).
    pub fn name(&self) -> String {
        normalize(&self.path)
    }
}

/// One line of `modules.alias`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// A glob over modalias strings (`pci:v00008086d000010D3sv*sd*bc*sc*i*`).
    pub pattern: String,
    /// The module that handles matching devices (`e1000e`).
    pub module: String,
}

pub fn render_deps(deps: &[Dep]) -> String {
    let mut s = String::new();
    for d in deps {
        s.push_str(&d.path);
        s.push(':');
        for x in &d.deps {
            s.push(' ');
            s.push_str(x);
        }
        s.push('\n');
    }
    s
}

/// Lines that are not `path: deps...` are skipped (comments, blank lines).
pub fn parse_deps(text: &str) -> Vec<Dep> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let (path, deps) = l.split_once(':')?;
            let path = path.trim();
            (!path.is_empty())
                .then(|| Dep { path: path.to_string(), deps: deps.split_whitespace().map(str::to_string).collect() })
        })
        .collect()
}

pub fn render_aliases(aliases: &[Alias]) -> String {
    let mut s = String::new();
    for a in aliases {
        s.push_str("alias ");
        s.push_str(&a.pattern);
        s.push(' ');
        s.push_str(&a.module);
        s.push('\n');
    }
    s
}

/// Lines that are not `alias <pattern> <module>` are skipped.
pub fn parse_aliases(text: &str) -> Vec<Alias> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            match (w.next(), w.next(), w.next(), w.next()) {
                (Some("alias"), Some(p), Some(m), None) => Some(Alias { pattern: p.to_string(), module: normalize(m) }),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(normalize("kernel/drivers/usb/host/xhci-pci.ko"), "xhci_pci");
        assert_eq!(normalize("e1000e.ko.xz"), "e1000e");
        assert_eq!(normalize("virtio-blk"), "virtio_blk");
    }

    #[test]
    fn files_round_trip() {
        let deps = vec![
            Dep { path: "kernel/a/x-y.ko".into(), deps: vec!["kernel/b.ko".into(), "kernel/c.ko".into()] },
            Dep { path: "kernel/b.ko".into(), deps: vec![] },
        ];
        let text = render_deps(&deps);
        assert_eq!(text, "kernel/a/x-y.ko: kernel/b.ko kernel/c.ko\nkernel/b.ko:\n");
        assert_eq!(parse_deps(&text), deps);
        assert_eq!(deps[0].name(), "x_y");
        let al = vec![Alias { pattern: "pci:v00001B36d0000000Dsv*sd*bc*sc*i*".into(), module: "xhci_pci".into() }];
        let text = render_aliases(&al);
        assert_eq!(parse_aliases(&format!("# comment\n{text}alias broken\n")), al);
    }
}
