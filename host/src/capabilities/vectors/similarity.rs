//! The arithmetic of a brute-force search: unit vectors, a dot product
//! read in place from stored bytes that the compiler vectorises (eight
//! independent sums), and a bounded top-k.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// `v` scaled to length 1, or `None` for a zero or non-finite vector.
pub fn normalized(v: &[f32]) -> Option<Vec<f32>> {
    if v.iter().any(|x| !x.is_finite()) {
        return None;
    }
    // In f64: squares of large components overflow f32, of tiny ones underflow.
    let norm = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    (norm > 0.0 && norm.is_finite())
        .then(|| v.iter().map(|&x| (f64::from(x) / norm) as f32).collect())
}

/// The dot product of a stored vector (little-endian bytes) with `query`,
/// read in place; `None` if the bytes are not `query.len()` floats.
pub fn dot_bytes(bytes: &[u8], query: &[f32]) -> Option<f32> {
    if bytes.len() != query.len() * 4 {
        return None;
    }
    let float = |b: &[u8]| f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let mut sums = [0f32; 8];
    let (b8, b_rest) = bytes.as_chunks::<32>();
    let (q8, q_rest) = query.as_chunks::<8>();
    for (b, q) in b8.iter().zip(q8) {
        for i in 0..8 {
            sums[i] += float(&b[4 * i..]) * q[i];
        }
    }
    let tail: f32 = b_rest
        .chunks_exact(4)
        .zip(q_rest)
        .map(|(b, q)| float(b) * q)
        .sum();
    Some(sums.iter().sum::<f32>() + tail)
}

/// Little-endian `f32`s, as stored.
pub fn encode(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A scored candidate; ordered by score, worst first in the heap.
struct Scored<T> {
    score: f32,
    item: T,
}

impl<T> PartialEq for Scored<T> {
    fn eq(&self, other: &Self) -> bool {
        self.score == other.score
    }
}
impl<T> Eq for Scored<T> {}
impl<T> PartialOrd for Scored<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Scored<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: the heap's top is the lowest score, the one to evict.
        other.score.total_cmp(&self.score)
    }
}

/// The `k` best items offered, at least `min_score`.
pub struct TopK<T> {
    k: usize,
    min_score: f32,
    heap: BinaryHeap<Scored<T>>,
}

impl<T> TopK<T> {
    pub fn new(k: usize, min_score: f32) -> Self {
        TopK {
            k,
            min_score,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// Whether a candidate with `score` would be kept (so it is only built then).
    pub fn admits(&self, score: f32) -> bool {
        score >= self.min_score
            && (self.heap.len() < self.k || self.heap.peek().is_some_and(|w| score > w.score))
    }

    pub fn offer(&mut self, score: f32, item: T) {
        if self.admits(score) {
            self.heap.push(Scored { score, item });
            if self.heap.len() > self.k {
                self.heap.pop();
            }
        }
    }

    /// Best first.
    pub fn into_sorted(self) -> Vec<(f32, T)> {
        // `into_sorted_vec` is ascending by `Ord`, which is reversed score.
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|s| (s.score, s.item))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_the_plain_sum_at_every_length() {
        for n in [1, 7, 8, 9, 384] {
            let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..n).map(|i| (i % 5) as f32).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let in_place = dot_bytes(&encode(&a), &b).unwrap();
            assert!(
                (in_place - plain).abs() < 1e-3 * plain.abs().max(1.0),
                "{n}"
            );
        }
    }

    #[test]
    fn unit_vectors_and_scores_read_from_stored_bytes() {
        let v = normalized(&[3.0, 4.0]).unwrap();
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert!(normalized(&[0.0, 0.0]).is_none());
        assert!(normalized(&[f32::NAN]).is_none());
        let big = normalized(&[3e30, 4e30]).unwrap();
        assert!((big[0] - 0.6).abs() < 1e-6, "{big:?}");
        assert!(normalized(&[1e-30, 0.0]).is_some());
        let q: Vec<f32> = (0..19).map(|i| i as f32 / 7.0).collect();
        let stored: Vec<f32> = (0..19).map(|i| 1.0 - i as f32 / 9.0).collect();
        let plain: f32 = stored.iter().zip(&q).map(|(x, y)| x * y).sum();
        assert!((dot_bytes(&encode(&stored), &q).unwrap() - plain).abs() < 1e-4);
        assert!(dot_bytes(&encode(&stored), &q[..18]).is_none());
    }

    #[test]
    fn top_k_keeps_the_best_above_the_floor_best_first() {
        let mut top = TopK::new(2, 0.1);
        for (score, id) in [
            (0.5, "a"),
            (0.05, "low"),
            (0.9, "b"),
            (0.7, "c"),
            (0.2, "d"),
        ] {
            top.offer(score, id);
        }
        let ids: Vec<_> = top.into_sorted().into_iter().map(|(_, id)| id).collect();
        assert_eq!(ids, ["b", "c"]);
    }
}
