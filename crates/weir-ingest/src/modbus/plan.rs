//! Poll planning: a device's tags grouped by scan rate, each group's tags
//! batched into as few contiguous reads as the protocol allows.

use std::collections::BTreeMap;
use std::time::Duration;

use super::registry::{Function, Tag};

/// One request: `count` addresses from `address` with one function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub function: Function,
    pub address: u16,
    pub count: u16,
    /// Indices into the device's tags that this read covers.
    pub tags: Vec<usize>,
}

/// Tags polled together at one scan rate.
#[derive(Debug, Clone)]
pub struct ScanGroup {
    pub period: Duration,
    pub reads: Vec<Read>,
}

/// Groups `tags` by scan rate and batches each group per function: tags are
/// sorted by address and merged into one read while the read stays within
/// the function's limit (125 registers / 2000 bits) and the hole between two
/// tags is at most `max_gap` addresses (reading a few unused registers is
/// cheaper than another round trip; some devices refuse unmapped addresses,
/// so `max_gap = 0` turns that off).
pub fn plan(tags: &[Tag], max_gap: u16) -> Vec<ScanGroup> {
    let mut by_rate: BTreeMap<(Duration, Function), Vec<usize>> = BTreeMap::new();
    for (i, t) in tags.iter().enumerate() {
        by_rate
            .entry((t.scan_rate, t.function))
            .or_default()
            .push(i);
    }
    let mut groups: Vec<ScanGroup> = Vec::new();
    for ((period, function), mut idx) in by_rate {
        idx.sort_by_key(|&i| (tags[i].address, tags[i].span()));
        let mut reads: Vec<Read> = Vec::new();
        for i in idx {
            let (start, end) = (
                u32::from(tags[i].address),
                u32::from(tags[i].address) + u32::from(tags[i].span()),
            );
            if let Some(r) = reads.last_mut() {
                let r_end = u32::from(r.address) + u32::from(r.count);
                let merged_end = r_end.max(end);
                let fits = merged_end - u32::from(r.address) <= u32::from(function.max_quantity());
                if start <= r_end + u32::from(max_gap) && fits {
                    r.count = (merged_end - u32::from(r.address)) as u16;
                    r.tags.push(i);
                    continue;
                }
            }
            reads.push(Read {
                function,
                address: start as u16,
                count: (end - start) as u16,
                tags: vec![i],
            });
        }
        match groups.iter_mut().find(|g| g.period == period) {
            Some(g) => g.reads.extend(reads),
            None => groups.push(ScanGroup { period, reads }),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modbus::registers::{DataType, WordOrder};

    fn tag(address: u16, data_type: DataType, function: Function, ms: u64) -> Tag {
        Tag {
            name: format!("t{address}"),
            function,
            address,
            data_type,
            order: WordOrder::Abcd,
            unit: None,
            scaling: 1.0,
            offset: 0.0,
            min: None,
            max: None,
            deadband: None,
            scan_rate: Duration::from_millis(ms),
        }
    }

    const HR: Function = Function::HoldingRegisters;

    #[test]
    fn contiguous_and_small_gaps_merge_big_gaps_split() {
        let tags = vec![
            tag(10, DataType::Float32, HR, 1000), // 10..12
            tag(0, DataType::Int16, HR, 1000),    // 0..1
            tag(1, DataType::Float64, HR, 1000),  // 1..5
            tag(100, DataType::UInt16, HR, 1000), // far away
        ];
        let groups = plan(&tags, 8);
        assert_eq!(groups.len(), 1);
        let reads = &groups[0].reads;
        assert_eq!(reads.len(), 2);
        assert_eq!((reads[0].address, reads[0].count), (0, 12));
        assert_eq!(reads[0].tags, vec![1, 2, 0]);
        assert_eq!((reads[1].address, reads[1].count), (100, 1));
        // No gaps allowed: 0..5 and 10..12 become separate reads.
        assert_eq!(plan(&tags, 0)[0].reads.len(), 3);
    }

    #[test]
    fn the_125_register_limit_splits_reads() {
        let tags: Vec<Tag> = (0..100)
            .map(|i| tag(i * 2, DataType::Float32, HR, 1000))
            .collect();
        let reads = &plan(&tags, 8)[0].reads;
        assert!(reads.iter().all(|r| r.count <= 125));
        assert_eq!(reads.len(), 2);
        assert_eq!((reads[0].address, reads[0].count), (0, 124));
        assert_eq!((reads[1].address, reads[1].count), (124, 76));
        let covered: usize = reads.iter().map(|r| r.tags.len()).sum();
        assert_eq!(covered, 100);
    }

    #[test]
    fn functions_and_scan_rates_are_separate_groups_and_reads() {
        let tags = vec![
            tag(0, DataType::Int16, HR, 1000),
            tag(1, DataType::Int16, Function::InputRegisters, 1000),
            tag(2, DataType::Int16, HR, 500),
            tag(3, DataType::Boolean, Function::Coils, 1000),
            tag(4, DataType::Boolean, Function::Coils, 1000),
        ];
        let groups = plan(&tags, 8);
        assert_eq!(groups.len(), 2);
        let fast = groups
            .iter()
            .find(|g| g.period == Duration::from_millis(500))
            .unwrap();
        assert_eq!(fast.reads.len(), 1);
        let slow = groups
            .iter()
            .find(|g| g.period == Duration::from_millis(1000))
            .unwrap();
        assert_eq!(slow.reads.len(), 3, "coils, holding, input");
        let coils = slow
            .reads
            .iter()
            .find(|r| r.function == Function::Coils)
            .unwrap();
        assert_eq!((coils.address, coils.count), (3, 2));
    }
}
