//! Planes of equal length cut into the same parts, part j of every plane handed to one task: the shape of work
//! that visits every plane of a few pixels while they are in cache (coarse climate sampling, the fill's month
//! planes, a block's scenes).

/// `planes` (each `len` values) cut into parts of `part` values: result `[j][i]` is part j of plane i. There
/// are `len.div_ceil(part)` parts even when there are no planes.
pub fn cut_alike<'a, T>(
    planes: impl IntoIterator<Item = &'a mut [T]>,
    len: usize,
    part: usize,
) -> Vec<Vec<&'a mut [T]>> {
    let mut parts: Vec<Vec<&mut [T]>> = (0..len.div_ceil(part)).map(|_| Vec::new()).collect();
    for plane in planes {
        assert_eq!(
            plane.len(),
            len,
            "planes cut alike must have the same length"
        );
        for (j, c) in plane.chunks_mut(part).enumerate() {
            parts[j].push(c);
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_j_of_every_plane_goes_together_and_the_last_part_is_short() {
        let mut a: Vec<u32> = (0..5).collect();
        let mut b: Vec<u32> = (10..15).collect();
        let parts = cut_alike([&mut a[..], &mut b[..]], 5, 2);
        let got: Vec<Vec<Vec<u32>>> = parts
            .into_iter()
            .map(|p| p.into_iter().map(|s| s.to_vec()).collect())
            .collect();
        assert_eq!(
            got,
            vec![
                vec![vec![0, 1], vec![10, 11]],
                vec![vec![2, 3], vec![12, 13]],
                vec![vec![4], vec![14]],
            ]
        );
        // No planes: still one (empty) part per run of pixels.
        assert_eq!(cut_alike(std::iter::empty::<&mut [u32]>(), 5, 2).len(), 3);
    }
}
