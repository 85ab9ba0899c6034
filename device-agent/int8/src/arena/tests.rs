use super::*;
use crate::testkit::too_small;

const OVERLAP: Error = Error::Shape("internal error: arena buffers overlap");

#[test]
fn split_gives_disjoint_views_either_way_round() {
    let mut arena: [i8; 10] = core::array::from_fn(|i| i as i8);
    let (src, dst) = split(&mut arena, 1..4, 6..10).unwrap();
    assert_eq!((src, dst.len(), dst[0]), (&[1, 2, 3][..], 4, 6));
    let (src, dst) = split(&mut arena, 7..9, 0..7).unwrap();
    assert_eq!((src, dst.len(), dst[6]), (&[7, 8][..], 7, 6));
    // Touching ranges are disjoint.
    assert!(split(&mut arena, 0..5, 5..10).is_ok());
    assert!(split(&mut arena, 0..0, 0..10).is_ok());
}

#[test]
fn overlapping_or_outside_ranges_are_errors_not_panics() {
    let mut arena = [0i8; 10];
    assert_eq!(split(&mut arena, 0..5, 4..8), Err(OVERLAP));
    assert_eq!(split(&mut arena, 2..3, 0..10), Err(OVERLAP));
    assert_eq!(split(&mut arena, 0..5, 6..11), Err(OVERLAP));
    assert_eq!(split(&mut arena, 8..12, 0..5), Err(OVERLAP));
    assert_eq!(split(&mut arena, 0..2, 11..12), Err(OVERLAP));
}

#[test]
fn consecutive_buffers_and_the_size_check() {
    let mut arena = [0i8; 9];
    let (a, b) = consecutive(&mut arena, 3, 5).unwrap();
    a.fill(1);
    b.fill(2);
    assert_eq!(arena, [1, 1, 1, 2, 2, 2, 2, 2, 0]);
    assert_eq!(consecutive(&mut arena, 4, 6), too_small(10));
    assert_eq!(check(&arena, 10), too_small(10));
    assert_eq!(check(&arena, 9), Ok(()));
}

#[test]
fn ends_place_tensors_at_either_end() {
    let ends = Ends { start: 2, end: 10 };
    assert_eq!(ends.at_start(3), 2..5);
    assert_eq!(ends.at_end(3), 7..10);
    assert_eq!(ends.at_end(8), 2..10);
}
