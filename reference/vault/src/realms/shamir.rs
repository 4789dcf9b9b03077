//! Shamir secret sharing over the ristretto255 scalar field (`spec/realms.md` §3.1, §4):
//! shares are `f(i)` for a random polynomial of degree `t − 1` with `f(0)` the secret, and any
//! `t` of them recombine with Lagrange coefficients at zero. About forty lines, so written
//! here rather than taken from a crate (`vsss-rs` would bring a second elliptic-curve stack
//! for what is two loops).

use super::group::random_scalar;
use crate::vault::VaultRng;
use curve25519_dalek::scalar::Scalar;
use zeroize::Zeroizing;

/// The shares `f(1) … f(n)` of `secret` for threshold `t` (1 ≤ t ≤ n ≤ 255).
pub(crate) fn split(secret: &Scalar, t: u8, n: u8, rng: &mut dyn VaultRng) -> Vec<Scalar> {
    debug_assert!(1 <= t && t <= n);
    let mut coefficients = Zeroizing::new(vec![*secret]);
    for _ in 1..t {
        coefficients.push(random_scalar(rng));
    }
    (1..=n)
        .map(|i| {
            let x = Scalar::from(u64::from(i));
            // Horner: a_{t-1}, then ·x + a_j down to a_0.
            coefficients
                .iter()
                .rev()
                .fold(Scalar::ZERO, |acc, a| acc * x + a)
        })
        .collect()
}

/// The Lagrange coefficients at zero for the distinct indices `xs` (each in 1..=255):
/// `λ_i = Π_{j ≠ i} x_j / (x_j − x_i)`.
pub(crate) fn lagrange_at_zero(xs: &[u8]) -> Vec<Scalar> {
    xs.iter()
        .map(|&i| {
            let xi = Scalar::from(u64::from(i));
            let (num, den) = xs.iter().filter(|&&j| j != i).fold(
                (Scalar::ONE, Scalar::ONE),
                |(num, den), &j| {
                    let xj = Scalar::from(u64::from(j));
                    (num * xj, den * (xj - xi))
                },
            );
            num * den.invert()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn combine(shares: &[(u8, Scalar)]) -> Scalar {
        let xs: Vec<u8> = shares.iter().map(|(x, _)| *x).collect();
        lagrange_at_zero(&xs)
            .iter()
            .zip(shares)
            .map(|(l, (_, s))| l * s)
            .sum()
    }

    #[test]
    fn any_t_shares_recombine_and_fewer_do_not() {
        let mut rng = OsRng;
        for (t, n) in [(1u8, 1u8), (1, 3), (2, 3), (3, 3), (3, 5), (5, 7)] {
            let secret = random_scalar(&mut rng);
            let shares = split(&secret, t, n, &mut rng);
            assert_eq!(shares.len(), n as usize);
            // Every window of t consecutive indices, and the last t.
            for start in 0..=(n - t) {
                let subset: Vec<(u8, Scalar)> = (start..start + t)
                    .map(|i| (i + 1, shares[i as usize]))
                    .collect();
                assert_eq!(combine(&subset), secret, "{t}-of-{n} from {start}");
            }
            if t > 1 {
                let fewer: Vec<(u8, Scalar)> =
                    (0..t - 1).map(|i| (i + 1, shares[i as usize])).collect();
                assert_ne!(combine(&fewer), secret, "{t}-of-{n} with t-1 shares");
            }
        }
    }

    #[test]
    fn one_share_of_threshold_one_is_the_secret() {
        let secret = random_scalar(&mut OsRng);
        assert!(split(&secret, 1, 4, &mut OsRng)
            .iter()
            .all(|s| *s == secret));
    }
}
