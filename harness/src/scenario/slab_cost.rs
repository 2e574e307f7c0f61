//! What the slab objects allocated between two memory readings cost, per object: the figure of
//! `measure_memory` with `objects:` (snapshots/README.md says what it counts and why).

/// What the slab objects allocated between two memory readings cost.
#[derive(Debug, PartialEq)]
pub(crate) struct SlabCost {
    /// The bytes of every cache's change, for the log.
    pub(crate) all_bytes: i64,
    /// Per object, over the caches that moved by a tenth of an object per object or more; only
    /// for 100 objects or more, so that one object stands out of the noise.
    pub(crate) per_object_bytes: Option<f64>,
    /// Caches that grew by half an object per object or more, with their growth per object.
    pub(crate) grown: Vec<String>,
}

impl SlabCost {
    pub(crate) fn between(
        before: &[luo_protocol::SlabCache],
        now: &[luo_protocol::SlabCache],
        objects: Option<u64>,
    ) -> SlabCost {
        let counted = objects.filter(|n| *n >= 100);
        let mut cost = SlabCost {
            all_bytes: 0,
            per_object_bytes: counted.map(|_| 0.0),
            grown: Vec::new(),
        };
        for c in now {
            let was = before
                .iter()
                .find(|p| p.name == c.name)
                .map_or(0, |p| p.active_objs);
            let added = c.active_objs as i64 - was as i64;
            cost.all_bytes += added * c.objsize as i64;
            let Some(n) = counted else {
                continue;
            };
            let per = added as f64 / n as f64;
            // A cache that moved by less than one object in ten is not what the objects cost
            // but what else ran in the window: on x86, 60 VMAs and 28 kmalloc-512 freed over
            // 1000 memfds (-38 B a memfd), not on arm64 (snapshots/README.md).
            if per.abs() >= 0.1 {
                *cost.per_object_bytes.as_mut().expect("counted") += per * c.objsize as f64;
            }
            if per >= 0.5 {
                cost.grown.push(format!(
                    "{}: +{:.1} per object ({} B each)",
                    c.name,
                    (per * 10.0).round() / 10.0,
                    c.objsize
                ));
            }
        }
        cost
    }

    /// The bytes per object, rounded to 64 (none of them negative).
    pub(crate) fn per_object_rounded(&self) -> Option<u64> {
        self.per_object_bytes
            .map(|b| ((b.max(0.0) / 64.0).round() * 64.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::SlabCost;
    use luo_protocol::SlabCache;

    fn cache(name: &str, active_objs: u64, objsize: u64) -> SlabCache {
        SlabCache {
            name: name.into(),
            active_objs,
            num_objs: active_objs,
            objsize,
            pages_per_slab: 1,
            num_slabs: 1,
        }
    }

    #[test]
    fn caches_moved_by_what_else_ran_are_left_out_of_the_bytes_per_object() {
        // x86_64's 1000 memfds as measured (docs: snapshots/README.md).
        let before = [
            cache("radix_tree_node", 100, 584),
            cache("vmap_area", 10, 72),
            cache("kmalloc-8", 10, 8),
            cache("kmalloc-96", 10, 96),
            cache("vm_area_struct", 100, 192),
            cache("kmalloc-512", 40, 512),
            cache("kmalloc-32", 10, 32),
        ];
        let now = [
            cache("radix_tree_node", 1266, 584),
            cache("vmap_area", 1010, 72),
            cache("kmalloc-8", 1010, 8),
            cache("kmalloc-96", 2010, 96),
            cache("vm_area_struct", 40, 192),
            cache("kmalloc-512", 12, 512),
            cache("kmalloc-32", 25, 32),
        ];
        let cost = SlabCost::between(&before, &now, Some(1000));
        assert_eq!(cost.all_bytes, 952_944 - 60 * 192 - 28 * 512 + 15 * 32);
        assert!((cost.per_object_bytes.unwrap() - 952.944).abs() < 1e-6);
        assert_eq!(cost.per_object_rounded(), Some(960));
        assert_eq!(
            cost.grown,
            [
                "radix_tree_node: +1.2 per object (584 B each)",
                "vmap_area: +1.0 per object (72 B each)",
                "kmalloc-8: +1.0 per object (8 B each)",
                "kmalloc-96: +2.0 per object (96 B each)",
            ]
        );
    }

    #[test]
    fn below_100_objects_there_is_no_figure_per_object() {
        let before = [cache("filp", 10, 192)];
        let now = [cache("filp", 60, 192)];
        let cost = SlabCost::between(&before, &now, Some(50));
        assert_eq!(cost.all_bytes, 50 * 192);
        assert_eq!((cost.per_object_rounded(), cost.grown.len()), (None, 0));
        assert_eq!(
            SlabCost::between(&before, &now, None).per_object_bytes,
            None
        );
    }
}
