//! The laws of profile composition (docs/design.md, "Objects, states, plans"; docs/profiles.md, "Composition"): the merge of partial
//! profiles is associative, the empty profile is its identity on both sides, scalars take the
//! later value, and set-lists merge as an ordered union without duplicates.

use std::collections::BTreeMap;
use std::path::Path;

use oa_builder::profile::{
    merge, Arch, Base, DriverClass, InitSystem, Merge, PartialImage, PartialInit, PartialKernel, PartialPackages,
    PartialProfile, PartialQemu, PartialService, Restart, SetList,
};
use proptest::prelude::*;

/// Few distinct values, so that merges collide often.
fn word() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "d", "x=1", "x=2", "console=ttyS0", "é"]).prop_map(str::to_string)
}

/// Raw lists, with duplicates.
fn words() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(word(), 0..6)
}

fn set_list() -> impl Strategy<Value = SetList> {
    words().prop_map(SetList::from)
}

fn opt_word() -> impl Strategy<Value = Option<String>> {
    prop::option::of(word())
}

fn service() -> impl Strategy<Value = PartialService> {
    (
        prop::option::of(prop::collection::vec(word(), 0..4)),
        prop::option::of(prop::sample::select(vec![Restart::Always, Restart::OnFailure, Restart::Never])),
        set_list(),
    )
        .prop_map(|(command, restart, env)| PartialService { command, restart, env })
}

fn services() -> impl Strategy<Value = BTreeMap<String, PartialService>> {
    prop::collection::btree_map(
        prop::sample::select(vec!["web", "db", "log"]).prop_map(str::to_string),
        service(),
        0..3,
    )
}

fn partial() -> impl Strategy<Value = PartialProfile> {
    let top = (
        opt_word(),
        opt_word(),
        set_list(),
        prop::option::of(prop::sample::select(Arch::ALL.to_vec())),
        prop::option::of(prop::sample::select(Base::ALL.to_vec())),
        opt_word(),
        set_list(),
    );
    let drivers = prop::option::of(prop::collection::vec(prop::sample::select(DriverClass::ALL.to_vec()), 0..3));
    let kernel = (opt_word(), set_list(), set_list(), drivers)
        .prop_map(|(package, cmdline, modules, drivers)| PartialKernel { package, cmdline, modules, drivers });
    let init = (
        prop::option::of(prop::sample::select(InitSystem::ALL.to_vec())),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(system, console_shell, emergency_shell, keep_runtime_config)| PartialInit {
            system,
            console_shell,
            emergency_shell,
            keep_runtime_config,
        });
    let qemu = (prop::option::of(128u32..4096), prop::option::of(1u32..8))
        .prop_map(|(memory_mib, cpus)| PartialQemu { memory_mib, cpus });
    let image = (
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        prop::option::of(0u32..256),
        prop::option::of(8u32..64),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::sample::select(oa_builder::profile::CopyToRam::ALL)),
        prop::option::of(1u32..16),
    )
        .prop_map(|(disk, qcow2, persistence_mib, esp_mib, netboot, iso, copytoram, copytoram_ram_factor)| {
            PartialImage { disk, qcow2, persistence_mib, esp_mib, netboot, iso, copytoram, copytoram_ram_factor }
        });
    let sections = (kernel, set_list(), init, services(), qemu, image);
    let os = (set_list(), set_list(), opt_word());
    (top, sections, os).prop_map(
        |(
            (name, description, include, arch, base, hostname, overlays),
            (kernel, debian, init, services, qemu, image),
            (arch_packages, enable_units, timezone),
        )| PartialProfile {
            name,
            description,
            include,
            arch,
            base,
            hostname,
            overlays,
            kernel,
            packages: PartialPackages { debian, arch: arch_packages },
            init,
            services,
            qemu,
            image,
            persistence: Default::default(),
            rpi: Default::default(),
            secure_boot: Default::default(),
            system: oa_builder::profile::PartialSystem { enable_units, timezone, ..Default::default() },
            debian: Default::default(),
            pacman: Default::default(),
            users: Default::default(),
            files: Default::default(),
        },
    )
}

/// The reference for set-list union: first occurrences, in order.
fn ordered_union(lists: &[&[String]]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for list in lists {
        for x in *list {
            if !out.contains(x) {
                out.push(x.clone());
            }
        }
    }
    out
}

fn has_duplicates(list: &[String]) -> bool {
    list.iter().enumerate().any(|(i, x)| list[..i].contains(x))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn merge_is_associative(a in partial(), b in partial(), c in partial()) {
        prop_assert_eq!(merge(&merge(&a, &b), &c), merge(&a, &merge(&b, &c)));
    }

    #[test]
    fn empty_profile_is_left_and_right_identity(a in partial()) {
        let empty = PartialProfile::default();
        prop_assert_eq!(&merge(&empty, &a), &a);
        prop_assert_eq!(&merge(&a, &empty), &a);
    }

    #[test]
    fn merge_is_idempotent(a in partial()) {
        prop_assert_eq!(&merge(&a, &a), &a);
    }

    #[test]
    fn scalars_take_the_later_value(a in partial(), b in partial()) {
        let m = merge(&a, &b);
        prop_assert_eq!(&m.hostname, &b.hostname.clone().or(a.hostname.clone()));
        prop_assert_eq!(m.arch, b.arch.or(a.arch));
        prop_assert_eq!(&m.kernel.package, &b.kernel.package.clone().or(a.kernel.package.clone()));
        prop_assert_eq!(m.qemu.memory_mib, b.qemu.memory_mib.or(a.qemu.memory_mib));
        prop_assert_eq!(m.init.console_shell, b.init.console_shell.or(a.init.console_shell));
        prop_assert_eq!(m.image.persistence_mib, b.image.persistence_mib.or(a.image.persistence_mib));
    }

    #[test]
    fn services_merge_by_name(a in partial(), b in partial()) {
        let m = merge(&a, &b);
        let names: Vec<String> = a.services.keys().chain(b.services.keys()).cloned().collect();
        prop_assert_eq!(m.services.len(), ordered_union(&[&names]).len());
        for (name, svc) in &m.services {
            let (sa, sb) = (a.services.get(name), b.services.get(name));
            // command is an argv: replaced whole, never concatenated
            let expected_cmd = sb.and_then(|s| s.command.clone()).or_else(|| sa.and_then(|s| s.command.clone()));
            prop_assert_eq!(&svc.command, &expected_cmd);
            let empty = SetList::new();
            let ea = sa.map_or(&empty, |s| &s.env);
            let eb = sb.map_or(&empty, |s| &s.env);
            prop_assert_eq!(svc.env.as_slice().to_vec(), ordered_union(&[ea.as_slice(), eb.as_slice()]));
        }
    }

    #[test]
    fn set_list_union_has_no_duplicates_and_keeps_first_occurrence_order(
        x in words(), y in words(), z in words()
    ) {
        let (sx, sy, sz) = (SetList::from(x.clone()), SetList::from(y.clone()), SetList::from(z.clone()));
        prop_assert!(!has_duplicates(sx.as_slice()));
        prop_assert_eq!(sx.as_slice().to_vec(), ordered_union(&[&x]));
        let m = sx.merge(&sy).merge(&sz);
        prop_assert!(!has_duplicates(m.as_slice()));
        prop_assert_eq!(m.as_slice().to_vec(), ordered_union(&[&x, &y, &z]));
    }

    #[test]
    fn set_lists_in_merged_profiles(a in partial(), b in partial()) {
        let m = merge(&a, &b);
        for (got, la, lb) in [
            (&m.kernel.cmdline, &a.kernel.cmdline, &b.kernel.cmdline),
            (&m.kernel.modules, &a.kernel.modules, &b.kernel.modules),
            (&m.packages.debian, &a.packages.debian, &b.packages.debian),
            (&m.overlays, &a.overlays, &b.overlays),
        ] {
            prop_assert!(!has_duplicates(got.as_slice()));
            prop_assert_eq!(got.as_slice().to_vec(), ordered_union(&[la.as_slice(), lb.as_slice()]));
        }
    }

    #[test]
    fn folding_files_equals_any_grouping(parts in prop::collection::vec(partial(), 0..6)) {
        let left = parts.iter().fold(PartialProfile::default(), |acc, p| merge(&acc, p));
        let right = parts.iter().rev().fold(PartialProfile::default(), |acc, p| merge(p, &acc));
        prop_assert_eq!(left, right);
    }

    #[test]
    fn partial_profiles_round_trip_through_toml(a in partial()) {
        let text = a.to_toml_string();
        let back = PartialProfile::from_toml_str(Path::new("roundtrip.toml"), &text)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(back, a);
    }
}
