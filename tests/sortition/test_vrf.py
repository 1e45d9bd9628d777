"""The Python VRF against Chainlink's own test vectors and against VRF.sol (through RefinerSortition):
valid proofs accepted with the same output on both sides, forgeries refused on both sides with the same
reason."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from eth_utils import keccak, to_checksum_address

from refiner.chain import ContractRevert
from refiner.chain.sortition import Sortition
from refiner.sortition import binomial, vrf
from refiner.sortition.vrf import N, P, Proof, VrfError, VrfKey

# ------------------------------------------------------------------------------------ Chainlink's vectors
# smartcontractkit/chainlink, contracts/src/v0.8/vrf/test/VRFV2Plus.t.sol (also in node_modules as
# @chainlink/contracts/src/v0.8/vrf/test/VRFV2Plus.t.sol): the proofs of
# setupSubAndRequestRandomnessLINKPayment (block 20) and setupSubAndRequestRandomnessNativePayment
# (block 10), made by Chainlink's Go prover (`generate-proof-v2-plus`) with secret key 10. The coordinator
# verifies them against keccak(preSeed ‖ blockhash), preSeed being `proof.seed`; the test's blockhash
# store answers the block number itself (0x14, 0x0a).

CHAINLINK_SECRET = 10
CHAINLINK_PK = (
    72488970228380509287422715226575535698893157273063074627791787432852706183111,
    62070622898698443831883535403436258712770888294397026493185421712108624767191,
)
#: `-key-hash` in the test's generate-proof command: Chainlink's hashOfKey(pk) = keccak(abi.encode(pk)).
CHAINLINK_KEY_HASH = bytes.fromhex("9f2353bde94264dbc3d554a94cceba2d7d2b4fdce4304d3e09a1fea9fbeb1528")


@dataclass(frozen=True)
class Vector:
    name: str
    block_hash: int
    proof: Proof

    @property
    def seed(self) -> int:
        """The seed the coordinator verifies against: keccak(abi.encodePacked(preSeed, blockHash))."""
        data = self.proof.seed.to_bytes(32, "big") + self.block_hash.to_bytes(32, "big")
        return int.from_bytes(keccak(data), "big")


VECTORS = [
    Vector(
        "LINK payment, block 20",
        0x14,
        Proof(
            pk=CHAINLINK_PK,
            gamma=(
                38041205470219573731614166317842050442610096576830191475863676359766283013831,
                31897503406364148988967447112698248795931483458172800286988696482435433838056,
            ),
            c=114706080610174375269579192101772790158458728655229562781479812703475130740224,
            s=91869928024010088265014058436030407245056128545665425448353233998362687232253,
            seed=58424872742560034068603954318478134981993109073728628043159461959392650534066,
            u_witness="0x1514536B09a51E671d070312bcD3653386d5a82b",
            c_gamma_witness=(
                90605489216274499662544489893800286859751132311034850249229378789467669572783,
                76568417372883461229305641415175605031997103681542349721251313705711146936024,
            ),
            s_hash_witness=(
                43417948503950579681520475434461454031791886587406480417092620950034789197994,
                100772571879140362396088596211082924128900752544164141322636815729889228000249,
            ),
            z_inv=82374292458278672300647114418593830323283909625362447038989596015264004164958,
        ),
    ),
    Vector(
        "native payment, block 10",
        0x0A,
        Proof(
            pk=CHAINLINK_PK,
            gamma=(
                47144451677122876068574640250190132179872561942855874114516471019540736524783,
                63001220656590641645486673489302242739512599229187442248048295264418080499391,
            ),
            c=42928477813589729783511577059394077774341588261592343937605454161333818133643,
            s=14447529458406454898597883219032514356523135029224613793880920230249515634875,
            seed=83266692323404068105564931899467966321583332182309426611016082057597749986430,
            u_witness="0x5Ed3bb2AA8EAFe168a23079644d5dfBf892B1038",
            c_gamma_witness=(
                40742088032247467257043132769297935807697466810312051815364187117543257089153,
                110399474382135664619186049639190334359061769014381608543009407662815758204131,
            ),
            s_hash_witness=(
                26556776392895292893984393164594214244553035014769995354896600239759043777485,
                67126706735912782218279556535631175449291035782208850310724682668198932501077,
            ),
            z_inv=88742453392918610091640193378775723954629905126315835248392650970979000380325,
        ),
    ),
]


def test_chainlink_key_and_key_hash(sortition: Sortition) -> None:
    key = VrfKey(CHAINLINK_SECRET)
    assert key.public_key == CHAINLINK_PK
    assert vrf.key_hash(CHAINLINK_PK) == CHAINLINK_KEY_HASH
    assert sortition.key_hash(CHAINLINK_PK) == CHAINLINK_KEY_HASH


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_chainlink_vector_verifies_in_python_and_is_reproduced(vector: Vector) -> None:
    out = vrf.verify(CHAINLINK_PK, vector.proof, vector.seed)
    assert out == vrf.output(vector.proof)
    # The output is unique: our prover, with its own nonce, finds the same gamma and so the same output.
    ours = vrf.prove(VrfKey(CHAINLINK_SECRET), vector.seed)
    assert ours.gamma == vector.proof.gamma
    assert ours.c != vector.proof.c
    assert vrf.verify(CHAINLINK_PK, ours, vector.seed) == out
    assert vrf.evaluate(VrfKey(CHAINLINK_SECRET), vector.seed) == out
    # Each vector has a single hash-to-curve attempt or more; either way ours lands on the same point.
    assert vrf.hash_to_curve(CHAINLINK_PK, vector.seed)[0] < N


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_chainlink_vector_accepted_by_vrf_sol(sortition: Sortition, vector: Vector) -> None:
    out = vrf.verify(CHAINLINK_PK, vector.proof, vector.seed)
    assert sortition.randomness(vector.proof, vector.seed) == out
    j, chain_out = sortition.verify_seats(vector.proof, vector.seed, 7, 100, 10)
    assert (j, chain_out) == (binomial.seats(out, 7, 100, 10), out)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_chainlink_vector_is_checked_against_the_seed_argument(sortition: Sortition, vector: Vector) -> None:
    """`proof.seed` holds Chainlink's pre-seed; the proof is for keccak(preSeed ‖ blockhash) only."""
    with pytest.raises(VrfError, match="Second mul check failed"):
        vrf.verify(CHAINLINK_PK, vector.proof, vector.proof.seed)
    with pytest.raises(ContractRevert) as exc:
        sortition.randomness(vector.proof, vector.proof.seed)
    assert exc.value.error == "Error"
    assert exc.value.args_by_name == {"message": "Second mul check failed"}


# ------------------------------------------------------------------------------------ our own proofs


def _keys(count: int, label: str = "vrf-test") -> list[VrfKey]:
    return [VrfKey.from_seed_bytes(f"{label}-{i}".encode()) for i in range(count)]


def test_python_proofs_accepted_on_chain_with_the_same_output(sortition: Sortition) -> None:
    rng = random.Random(20240611)
    keys = _keys(30)
    seeds = [0, 2**256 - 1, *(rng.getrandbits(256) for _ in range(28))]
    for key, seed in zip(keys, seeds, strict=True):
        proof = vrf.prove(key, seed)
        assert proof.seed == seed
        out = vrf.verify(key.public_key, proof, seed)
        assert out == vrf.evaluate(key, seed) == vrf.output(proof)
        assert sortition.randomness(proof, seed) == out
        stake, total, tau = rng.randrange(1, 5000), 10_000, rng.choice([5, 8, 32])
        assert sortition.verify_seats(proof, seed, stake, total, tau) == (
            binomial.seats(out, stake, total, tau),
            out,
        )


def test_proofs_are_randomized_but_the_output_is_unique() -> None:
    key = VrfKey.from_seed_bytes(b"unique")
    first, second = vrf.prove(key, 42), vrf.prove(key, 42)
    assert (first.c, first.s, first.u_witness) != (second.c, second.s, second.u_witness)
    assert first.gamma == second.gamma
    assert vrf.verify(key.public_key, first, 42) == vrf.verify(key.public_key, second, 42)
    assert vrf.evaluate(key, 42) != vrf.evaluate(key, 43)
    assert vrf.evaluate(key, 42) != vrf.evaluate(VrfKey.from_seed_bytes(b"other"), 42)


def test_hash_to_curve_matches_the_field_arithmetic_of_vrf_sol() -> None:
    """coincurve's decompression equals y = (x³ + 7)^((p+1)/4) made even, re-hashing x on failure."""

    def reference(pk: tuple[int, int], seed: int) -> tuple[int, int]:
        x = vrf.field_hash(b"".join(v.to_bytes(32, "big") for v in (1, *pk, seed)))
        while True:
            y_squared = (x**3 + 7) % P
            y = pow(y_squared, (P + 1) // 4, P)
            if y * y % P == y_squared:
                return x, P - y if y & 1 else y
            x = vrf.field_hash(x.to_bytes(32, "big"))

    pk = VrfKey.from_seed_bytes(b"h2c").public_key
    for seed in range(300):
        assert vrf.hash_to_curve(pk, seed) == reference(pk, seed)


def test_proof_tuple_round_trip() -> None:
    proof = vrf.prove(VrfKey.from_seed_bytes(b"tuple"), 7)
    fields = proof.as_tuple()
    assert len(fields) == 9 and fields[4] == 7 and fields[5] == proof.u_witness
    assert Proof.from_tuple(fields) == proof


def test_keys() -> None:
    for bad in (0, N, -1):
        with pytest.raises(VrfError):
            VrfKey(bad)
    assert VrfKey.from_seed_bytes(b"a").public_key == VrfKey.from_seed_bytes(b"a").public_key
    assert VrfKey.from_seed_bytes(b"a").public_key != VrfKey.from_seed_bytes(b"b").public_key
    assert VrfKey.generate().public_key != VrfKey.generate().public_key
    key = VrfKey(123456789)
    assert "123456789" not in repr(key) and hex(123456789) not in repr(key)


def _point_with_x_at_least_n() -> tuple[int, int]:
    x = N
    while True:
        y_squared = (x**3 + 7) % P
        y = pow(y_squared, (P + 1) // 4, P)
        if y * y % P == y_squared:
            return x, y
        x += 1


def test_keys_whose_public_x_is_at_least_n_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """VRF.sol feeds pk.x to ecrecover as a signature's r, which must be < n (1 key in 2^128)."""
    monkeypatch.setattr(vrf, "_mul_base", lambda scalar: _point_with_x_at_least_n())
    with pytest.raises(VrfError, match=">= n"):
        VrfKey(5)


def test_seed_whose_curve_point_ecrecover_cannot_take_has_no_proof(monkeypatch: pytest.MonkeyPatch) -> None:
    key = VrfKey.from_seed_bytes(b"h-x-ge-n")
    monkeypatch.setattr(vrf, "hash_to_curve", lambda pk, seed: _point_with_x_at_least_n())
    with pytest.raises(VrfError, match="hashToCurve"):
        vrf.prove(key, 1)


# ------------------------------------------------------------------------------------ forgeries

KEY_A, KEY_B = VrfKey.from_seed_bytes(b"forger-a"), VrfKey.from_seed_bytes(b"forger-b")
SEED = 0xC0FFEE


@dataclass(frozen=True)
class Forgery:
    name: str
    make: Callable[[], tuple[Proof, int, tuple[int, int]]]  # (proof, seed, public key Python checks)
    message: str


def _honest(key: VrfKey = KEY_A, seed: int = SEED) -> Proof:
    return vrf.prove(key, seed)


def _other_point() -> tuple[int, int]:
    return _honest(KEY_B).c_gamma_witness


def _forged(**changes: object) -> Callable[[], tuple[Proof, int, tuple[int, int]]]:
    def make() -> tuple[Proof, int, tuple[int, int]]:
        proof = _honest()
        values = {k: (v(proof) if callable(v) else v) for k, v in changes.items()}
        return replace(proof, **values), SEED, KEY_A.public_key  # type: ignore[arg-type]

    return make


def _for_other_seed() -> tuple[Proof, int, tuple[int, int]]:
    return _honest(seed=SEED), SEED + 1, KEY_A.public_key


def _with_other_pk() -> tuple[Proof, int, tuple[int, int]]:
    # Claims A's proof under B's key (Python is told B's key, so it reaches the same check as VRF.sol).
    return replace(_honest(), pk=KEY_B.public_key), SEED, KEY_B.public_key


def _mixed_proofs() -> tuple[Proof, int, tuple[int, int]]:
    first, second = _honest(), _honest()
    return replace(first, c=second.c, s=second.s), SEED, KEY_A.public_key


ADDR_CHECK = "addr(c*pk+s*g)!=_uWitness"
FORGERIES = [
    Forgery("flipped low bit in c", _forged(c=lambda p: p.c ^ 1), ADDR_CHECK),
    Forgery("flipped high bit in c", _forged(c=lambda p: p.c ^ (1 << 200)), ADDR_CHECK),
    Forgery("flipped bit in s", _forged(s=lambda p: p.s ^ 1), ADDR_CHECK),
    Forgery("s = 0", _forged(s=0), ADDR_CHECK),
    Forgery("proof for another seed", _for_other_seed, "Second mul check failed"),
    Forgery("another key's pk", _with_other_pk, ADDR_CHECK),
    Forgery("c and s of another proof", _mixed_proofs, ADDR_CHECK),
    Forgery("another key's gamma", _forged(gamma=lambda p: _honest(KEY_B).gamma), "First mul check failed"),
    Forgery("wrong zInv", _forged(z_inv=lambda p: (p.z_inv + 1) % P), "invZ must be inverse of z"),
    Forgery("wrong uWitness", _forged(u_witness=to_checksum_address("0x" + "11" * 20)), ADDR_CHECK),
    Forgery("zero uWitness", _forged(u_witness=to_checksum_address("0x" + "00" * 20)), "bad witness"),
    Forgery(
        "wrong cGammaWitness", _forged(c_gamma_witness=lambda p: _other_point()), "First mul check failed"
    ),
    Forgery(
        "wrong sHashWitness", _forged(s_hash_witness=lambda p: _other_point()), "Second mul check failed"
    ),
    Forgery(
        "witnesses with equal x",
        _forged(s_hash_witness=lambda p: p.c_gamma_witness),
        "points in sum must be distinct",
    ),
    Forgery(
        "cGammaWitness off the curve",
        _forged(c_gamma_witness=lambda p: (p.c_gamma_witness[0], (p.c_gamma_witness[1] + 1) % P)),
        "cGammaWitness is not on curve",
    ),
    Forgery(
        "gamma off the curve", _forged(gamma=lambda p: (p.gamma[0], p.gamma[1] ^ 2)), "gamma is not on curve"
    ),
    Forgery("gamma x = p", _forged(gamma=lambda p: (P, p.gamma[1])), "invalid x-ordinate"),
]


@pytest.mark.parametrize("forgery", FORGERIES, ids=lambda f: f.name)
def test_forged_proof_refused_in_python_and_on_chain_for_the_same_reason(
    sortition: Sortition, forgery: Forgery
) -> None:
    proof, seed, public_key = forgery.make()
    with pytest.raises(VrfError) as py_exc:
        vrf.verify(public_key, proof, seed)
    assert str(py_exc.value) == forgery.message
    with pytest.raises(ContractRevert) as chain_exc:
        sortition.randomness(proof, seed)
    assert chain_exc.value.error == "Error"
    assert chain_exc.value.args_by_name == {"message": forgery.message}
    with pytest.raises(ContractRevert):
        sortition.verify_seats(proof, seed, 1, 10, 5)


def test_someone_elses_valid_proof_is_valid_on_chain_so_callers_must_check_the_key(
    sortition: Sortition,
) -> None:
    """VRF.sol checks a proof under the key it carries: the contract returns A's output to anyone who
    submits A's proof. Python refuses it for B; on chain the task must compare keyHash(proof.pk) with the
    key registered for msg.sender."""
    proof = _honest()
    with pytest.raises(VrfError, match="another public key"):
        vrf.verify(KEY_B.public_key, proof, SEED)
    assert sortition.randomness(proof, SEED) == vrf.evaluate(KEY_A, SEED)
    assert sortition.key_hash(proof.pk) == vrf.key_hash(KEY_A.public_key) != vrf.key_hash(KEY_B.public_key)
