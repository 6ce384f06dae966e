//! A block's outputs period by period. When no scene belongs to two periods and nothing is gap filled (which
//! needs every scene of a pixel's series), each period is read and written on its own: its scenes are read and
//! its outputs composited, written and compressed as soon as they are, periods in parallel. No output waits
//! for the scenes of another period, so the workers are not held at a barrier between reading every scene and
//! writing every output. The values are those of the all-at-once path (`Pass::block_together`): the same
//! per-scene index values, the same composites and counts per pixel.

use rayon::prelude::*;

use super::{clear_then_fill, scene_index_values, scene_slices, IndicesJob, Pass};
use crate::error::Result;
use crate::io::{RasterWriter, Window};

/// Writers that share their scenes: one period's index outputs and clear-observation count.
pub(super) struct Group {
    /// Positions of the period's scenes in the block's scene axis.
    members: Vec<usize>,
    /// Indices of the group's writers in the pass's writer list.
    writers: Vec<usize>,
}

/// The groups of a pass whose writers read `members[i]` (the scenes of writer i), or None when a scene
/// belongs to two groups (it would be read twice).
pub(super) fn groups(members: &[&[usize]]) -> Option<Vec<Group>> {
    let mut groups: Vec<Group> = Vec::new();
    for (w, m) in members.iter().enumerate() {
        match groups.iter_mut().find(|g| g.members == *m) {
            Some(g) => g.writers.push(w),
            None => groups.push(Group {
                members: m.to_vec(),
                writers: vec![w],
            }),
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let disjoint = groups
        .iter()
        .flat_map(|g| &g.members)
        .all(|&s| seen.insert(s));
    disjoint.then_some(groups)
}

/// One block, group by group in parallel; per writer, clear observations and pixels with data (as
/// `Pass::block_together`).
pub(super) fn block(
    pass: &Pass,
    job: &IndicesJob,
    writers: &mut [RasterWriter],
    groups: &[Group],
    w: &Window,
) -> Result<Vec<(u64, u64)>> {
    let nw = writers.len();
    let mut slots: Vec<Option<&mut RasterWriter>> = writers.iter_mut().map(Some).collect();
    let work: Vec<(&Group, Vec<(usize, &mut RasterWriter)>)> = groups
        .iter()
        .map(|g| {
            let ws = g
                .writers
                .iter()
                .map(|&i| (i, slots[i].take().expect("one group per writer")));
            (g, ws.collect())
        })
        .collect();
    let done: Vec<Vec<(usize, (u64, u64))>> = work
        .into_par_iter()
        .map(|(g, ws)| group_block(pass, job, g, ws, w))
        .collect::<Result<_>>()?;
    let mut counts = vec![(0, 0); nw];
    for (i, c) in done.into_iter().flatten() {
        counts[i] = c;
    }
    Ok(counts)
}

/// One group over a block: its scenes read (in parallel), then its writers' blocks (in parallel).
fn group_block(
    pass: &Pass,
    job: &IndicesJob,
    g: &Group,
    ws: Vec<(usize, &mut RasterWriter)>,
    w: &Window,
) -> Result<Vec<(usize, (u64, u64))>> {
    let npx = w.len();
    let prep = pass.prep;
    let len = g.members.len();
    let mut values = vec![vec![f32::NAN; len * npx]; pass.indices.len()];
    let mut scene_clear = vec![false; len * npx];
    let eval = (
        prep.compiled.as_slice(),
        prep.band_pos.as_slice(),
        pass.indices.as_slice(),
    );
    scene_slices(&mut values, &mut scene_clear, npx)
        .into_par_iter()
        .zip(g.members.par_iter())
        .try_for_each(|((outs, clr), &m)| {
            scene_index_values(&pass.scenes.readers[m], eval, w, outs, clr)
        })?;
    // Nothing is gap filled on this path: a value is clear where it is not NaN.
    let clear = clear_then_fill(&mut values, npx, None);
    // The group's scenes are positions 0 .. len of its own axis.
    let local: Vec<usize> = (0..len).collect();
    let doys: Vec<f64> = g.members.iter().map(|&m| pass.scenes.doys[m]).collect();
    let scenes = (&values[..], &clear[..], &scene_clear[..]);
    ws.into_par_iter()
        .map(|(i, ow)| {
            let c = pass.write_one(job, (i, ow), w, scenes, (&local, &doys))?;
            Ok((i, c))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_that_share_no_scene_are_grouped_and_shared_scenes_refuse() {
        // Writers 0-2: NDVI of months with scenes {0, 1}, {2}, {} ; writers 3-5: the same months' counts.
        let m: [&[usize]; 6] = [&[0, 1], &[2], &[], &[0, 1], &[2], &[]];
        let g = groups(&m).expect("disjoint");
        let got: Vec<(Vec<usize>, Vec<usize>)> = g
            .iter()
            .map(|g| (g.members.clone(), g.writers.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (vec![0, 1], vec![0, 3]),
                (vec![2], vec![1, 4]),
                (vec![], vec![2, 5])
            ]
        );
        // A year beside its months: scene 1 would be read twice.
        assert!(groups(&[&[0, 1], &[1], &[0, 1, 2]]).is_none());
    }
}
