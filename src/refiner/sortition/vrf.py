"""Chainlink's secp256k1 VRF: a prover and a verifier that agree with ``VRF.sol`` bit for bit.

The construction is the one ``@chainlink/contracts`` ``src/v0.8/vrf/VRF.sol`` verifies (an ECVRF after
draft-irtf-cfrg-vrf-05 with keccak256, no suite string, and ``u`` replaced by its Ethereum address so the
contract can check it with ``ecrecover``). Integers are 32-byte big-endian, ``‖`` is concatenation:

* ``H = hashToCurve(pk, seed)``: ``x = fieldHash(1 ‖ pk.x ‖ pk.y ‖ seed)``, then ``x = fieldHash(x)`` until
  ``x³ + 7`` is a square; ``y`` is its even square root. ``fieldHash`` re-hashes until the value is < p.
* ``Γ = sk·H``; with a fresh nonce k: ``u = k·G``, ``v = k·H``,
  ``c = keccak(2 ‖ H ‖ pk ‖ Γ ‖ v ‖ address(u))`` (the raw 256-bit value), ``s = (k − c·sk) mod n``.
* Witnesses for the contract: ``cGammaWitness = c·Γ``, ``sHashWitness = s·H`` and
  ``zInv = (sHashWitness.x − cGammaWitness.x)^−5 mod p`` (the inverse of the projective z that
  ``VRF._projectiveECAdd`` produces).
* Output (the randomness): ``keccak(3 ‖ Γ.x ‖ Γ.y)``.

:func:`verify` performs the checks of ``VRF._verifyVRFProof`` in the same order, with the same failure
cases (a scalar ≡ 0, an x-ordinate ≥ n that ``ecrecover`` cannot take, equal witness x-ordinates), so a
proof this module accepts is one the contract accepts and vice versa. Scalar multiplications use
coincurve (libsecp256k1); the rest is integer arithmetic.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from coincurve import PrivateKey, PublicKey
from eth_utils import keccak, to_checksum_address

#: secp256k1 field prime and group order.
P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

HASH_TO_CURVE_PREFIX = 1
SCALAR_FROM_CURVE_POINTS_PREFIX = 2
OUTPUT_PREFIX = 3

Point = tuple[int, int]


class VrfError(ValueError):
    """A proof does not verify, or a key or seed cannot be used (the reason is the message)."""


# ---------------------------------------------------------------------------------------------- helpers


def _word(x: int) -> bytes:
    return x.to_bytes(32, "big")


def _words(*values: int) -> bytes:
    return b"".join(_word(v) for v in values)


def _check_on_curve(name: str, point: Point) -> None:
    """VRF._isOnCurve, with its messages: the coordinates must be field elements on y² = x³ + 7."""
    x, y = point
    if not 0 <= x < P:
        raise VrfError("invalid x-ordinate")
    if not 0 <= y < P:
        raise VrfError("invalid y-ordinate")
    if (y * y - (x * x * x + 7)) % P != 0:
        raise VrfError(f"{name} is not on curve")


def address_of(point: Point) -> str:
    """The Ethereum address of a point: the last 20 bytes of keccak(x ‖ y), checksummed."""
    return to_checksum_address(keccak(_words(*point))[12:])


def _mul(point: Point, scalar: int) -> Point:
    """scalar·point for a point on the curve and 0 < scalar mod n (coincurve refuses 0)."""
    k = scalar % N
    if k == 0:
        raise VrfError("scalar is 0 mod n")
    return PublicKey.from_point(*point).multiply(_word(k)).point()


def _mul_base(scalar: int) -> Point:
    k = scalar % N
    if k == 0:
        raise VrfError("scalar is 0 mod n")
    return PrivateKey(_word(k)).public_key.point()


def _add(a: Point, b: Point) -> Point:
    """a + b for two points on the curve with distinct x-ordinates (the only case VRF.sol adds)."""
    lam = (b[1] - a[1]) * pow(b[0] - a[0], -1, P) % P
    x = (lam * lam - a[0] - b[0]) % P
    return x, (lam * (a[0] - x) - a[1]) % P


def field_hash(data: bytes) -> int:
    """keccak(data) as an integer, re-hashed until it is a field element (< p)."""
    x = int.from_bytes(keccak(data), "big")
    while x >= P:
        x = int.from_bytes(keccak(_word(x)), "big")
    return x


def hash_to_curve(public_key: Point, seed: int) -> Point:
    """``VRF._hashToCurve(pk, seed)``: the curve point the seed is mapped to under this key."""
    x = field_hash(_words(HASH_TO_CURVE_PREFIX, public_key[0], public_key[1], seed))
    while True:
        # libsecp256k1 decompresses 02‖x to the point with even y iff x³ + 7 is a square mod p: the
        # same point as y = (x³ + 7)^((p+1)/4) made even, ten times faster than Python's pow.
        try:
            return PublicKey(b"\x02" + _word(x)).point()
        except ValueError:
            x = field_hash(_word(x))


def _challenge(h: Point, pk: Point, gamma: Point, v: Point, u_witness: str) -> int:
    data = _words(SCALAR_FROM_CURVE_POINTS_PREFIX, *h, *pk, *gamma, *v) + bytes.fromhex(u_witness[2:])
    return int.from_bytes(keccak(data), "big")


def z_inverse(c_gamma_witness: Point, s_hash_witness: Point) -> int:
    """The ``zInv`` VRF.sol expects: the inverse of ``(sHashWitness.x − cGammaWitness.x)^5`` mod p."""
    return pow(pow(s_hash_witness[0] - c_gamma_witness[0], 5, P), -1, P)


def output_of(gamma: Point) -> int:
    """The VRF output (randomness) determined by Γ: keccak(3 ‖ Γ.x ‖ Γ.y)."""
    return int.from_bytes(keccak(_words(OUTPUT_PREFIX, *gamma)), "big")


def key_hash(public_key: Point) -> bytes:
    """keccak(abi.encode(pk)): the 32-byte identifier Chainlink (and RefinerSortition.keyHash) uses."""
    return keccak(_words(*public_key))


# ---------------------------------------------------------------------------------------------- keys


class VrfKey:
    """A VRF secret key (a scalar in [1, n)) and its public key.

    Keys whose public key has ``x ≥ n`` are refused: VRF.sol checks ``c·pk + s·G`` with ``ecrecover``,
    which takes ``pk.x`` as a signature's r and so needs it below n (about one key in 2^128).
    """

    __slots__ = ("_public_key", "_secret")

    def __init__(self, secret: int) -> None:
        if not 0 < secret < N:
            raise VrfError("a VRF secret key must be in [1, n)")
        pk = _mul_base(secret)
        if pk[0] >= N:
            raise VrfError("public key x-ordinate is >= n: VRF.sol cannot verify proofs for this key")
        self._secret = secret
        self._public_key = pk

    @classmethod
    def from_seed_bytes(cls, seed: bytes) -> VrfKey:
        """A key derived deterministically from `seed` (keccak, re-hashed until usable)."""
        digest = keccak(b"refiner-vrf-key" + seed)
        while True:
            secret = int.from_bytes(digest, "big")
            if 0 < secret < N:
                try:
                    return cls(secret)
                except VrfError:
                    pass
            digest = keccak(digest)

    @classmethod
    def generate(cls) -> VrfKey:
        """A fresh random key from the operating system's CSPRNG."""
        while True:
            try:
                return cls(secrets.randbelow(N - 1) + 1)
            except VrfError:
                continue

    @property
    def secret(self) -> int:
        return self._secret

    @property
    def public_key(self) -> Point:
        return self._public_key

    def __repr__(self) -> str:  # never print the secret
        return f"VrfKey(public_key=({self._public_key[0]:#x}, {self._public_key[1]:#x}))"


# ---------------------------------------------------------------------------------------------- proofs


@dataclass(frozen=True)
class Proof:
    """The fields of VRF.sol's ``Proof`` struct, in its order.

    ``seed`` is carried along but is not what the proof is checked against: the verifier (and
    ``RefinerSortition.randomness``) takes the seed as a separate argument, which the caller derives
    itself. Chainlink's coordinator, for one, puts a pre-seed here and verifies against
    keccak(preSeed ‖ blockhash).
    """

    pk: Point
    gamma: Point
    c: int
    s: int
    seed: int
    u_witness: str
    c_gamma_witness: Point
    s_hash_witness: Point
    z_inv: int

    def as_tuple(self) -> tuple[Any, ...]:
        """The proof as web3 encodes the ``VRF.Proof`` struct."""
        return (
            list(self.pk),
            list(self.gamma),
            self.c,
            self.s,
            self.seed,
            self.u_witness,
            list(self.c_gamma_witness),
            list(self.s_hash_witness),
            self.z_inv,
        )

    @classmethod
    def from_tuple(cls, fields: tuple[Any, ...] | list[Any]) -> Proof:
        """The inverse of :meth:`as_tuple` (also accepts a struct as web3 decodes it)."""
        pk, gamma, c, s, seed, u_witness, c_gamma, s_hash, z_inv = fields
        return cls(
            (int(pk[0]), int(pk[1])),
            (int(gamma[0]), int(gamma[1])),
            int(c),
            int(s),
            int(seed),
            to_checksum_address(u_witness),
            (int(c_gamma[0]), int(c_gamma[1])),
            (int(s_hash[0]), int(s_hash[1])),
            int(z_inv),
        )


def output(proof: Proof) -> int:
    """The randomness a proof claims (keccak(3 ‖ Γ)); only meaningful once :func:`verify` accepted it."""
    return output_of(proof.gamma)


def evaluate(key: VrfKey, seed: int) -> int:
    """`key`'s VRF output for `seed` without a proof (one scalar multiplication): what a validator
    computes to learn whether it won seats before it pays for a proof on chain."""
    if not 0 <= seed < 2**256:
        raise VrfError("seed must be a uint256")
    return output_of(_mul(hash_to_curve(key.public_key, seed), key.secret))


def prove(key: VrfKey, seed: int) -> Proof:
    """A proof that ``output(proof)`` is `key`'s VRF value for `seed`; a fresh random nonce each call.

    Raises :class:`VrfError` in the cases no valid proof exists for this key and seed (``H.x ≥ n`` or
    ``Γ.x ≥ n``, each about 2^-128): VRF.sol's ``ecrecover`` checks cannot take those points.
    """
    if not 0 <= seed < 2**256:
        raise VrfError("seed must be a uint256")
    pk = key.public_key
    h = hash_to_curve(pk, seed)
    if h[0] >= N:
        raise VrfError("hashToCurve(pk, seed).x >= n: VRF.sol cannot verify any proof for this seed")
    gamma = _mul(h, key.secret)
    if gamma[0] >= N:
        raise VrfError("gamma.x >= n: VRF.sol cannot verify any proof for this seed")
    while True:
        k = secrets.randbelow(N - 1) + 1
        u_witness = address_of(_mul_base(k))
        v = _mul(h, k)
        c = _challenge(h, pk, gamma, v, u_witness)
        s = (k - c * key.secret) % N
        if s == 0 or c % N == 0:
            continue
        c_gamma = _mul(gamma, c)
        s_hash = _mul(h, s)
        if c_gamma[0] == s_hash[0]:
            continue
        return Proof(pk, gamma, c, s, seed, u_witness, c_gamma, s_hash, z_inverse(c_gamma, s_hash))


def _ecmul_matches(multiplicand: Point, scalar: int, product: Point) -> bool:
    """VRF._ecmulVerify: address(scalar·multiplicand) == address(product), as ecrecover computes it."""
    if scalar == 0:
        raise VrfError("zero scalar")
    if multiplicand[0] >= N or scalar * multiplicand[0] % N == 0:
        return False  # ecrecover returns the zero address
    return address_of(_mul(multiplicand, scalar)) == address_of(product)


def verify(public_key: Point, proof: Proof, seed: int) -> int:
    """The VRF output if `proof` proves it for `public_key` and `seed`; raises :class:`VrfError` otherwise.

    Mirrors ``VRF._verifyVRFProof`` check by check (messages as in VRF.sol where it has one), against
    the `seed` argument, not ``proof.seed``; additionally requires ``proof.pk == public_key``.
    """
    if tuple(proof.pk) != tuple(public_key):
        raise VrfError("proof is for another public key")
    if not 0 <= seed < 2**256 or not 0 <= proof.c < 2**256 or not 0 <= proof.s < 2**256:
        raise VrfError("seed, c and s must be uint256")
    for name, point in (
        ("public key", proof.pk),
        ("gamma", proof.gamma),
        ("cGammaWitness", proof.c_gamma_witness),
        ("sHashWitness", proof.s_hash_witness),
    ):
        _check_on_curve(name, point)
    pk, c, s = proof.pk, proof.c, proof.s
    # _verifyLinearCombinationWithGenerator: ecrecover yields address(c·pk + s·G) (or 0 if it fails).
    if int(proof.u_witness, 16) == 0:
        raise VrfError("bad witness")
    lc_ok = pk[0] < N and c * pk[0] % N != 0
    if lc_ok:
        try:
            lc = PublicKey.combine_keys(
                [
                    PublicKey.from_point(*pk).multiply(_word(c % N)),
                    *([PublicKey.from_secret(_word(s % N))] if s % N else []),
                ]
            ).point()
        except ValueError:  # the sum is the point at infinity
            lc_ok = False
        else:
            lc_ok = address_of(lc) == to_checksum_address(proof.u_witness)
    if not lc_ok:
        raise VrfError("addr(c*pk+s*g)!=_uWitness")
    h = hash_to_curve(pk, seed)
    # _linearCombination(c, gamma, cGammaWitness, s, hash, sHashWitness, zInv)
    if proof.c_gamma_witness[0] == proof.s_hash_witness[0]:
        raise VrfError("points in sum must be distinct")
    if not _ecmul_matches(proof.gamma, c, proof.c_gamma_witness):
        raise VrfError("First mul check failed")
    if not _ecmul_matches(h, s, proof.s_hash_witness):
        raise VrfError("Second mul check failed")
    z = pow(proof.s_hash_witness[0] - proof.c_gamma_witness[0], 5, P)
    if z * proof.z_inv % P != 1:
        raise VrfError("invZ must be inverse of z")
    v = _add(proof.c_gamma_witness, proof.s_hash_witness)
    if _challenge(h, pk, proof.gamma, v, to_checksum_address(proof.u_witness)) != c:
        raise VrfError("invalid proof")
    return output_of(proof.gamma)
