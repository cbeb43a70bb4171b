#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets from the protocol test vectors.

Every packet of packets.json and edge_cases.json and the crypto vectors become
seeds in the input layout of each target (see the comment at the top of each
tests/fuzz/fuzz_*.cpp). Seeds are files named seed-*; files that libFuzzer
merged in (run.sh --merge, named by their SHA-1) are left alone.

    tests/fuzz/make_corpus.py [--vectors DIR]
"""

import argparse
import base64
import json
import pathlib
import re
import struct

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_VECTORS = HERE.parents[1] / "tests" / "vectors"

DEFAULT_LIMIT = 0x80  # fuzz_split: selector with bit 7 set = the server's 1 MiB limit

WKPROTO = 0x80  # fuzz_decode: selector bit 7 = the WuKongIM dialect
# fuzz_connect key kinds (first byte of each range in read_client_key).
KEY_OWN_PAIR, KEY_SHORT, KEY_LOW_ORDER, KEY_INVALID, KEY_ARBITRARY = 0, 128, 160, 192, 224
LOW_ORDER_POINT_COUNT = 7

# fuzz_crypto operations.
OP_DECRYPT, OP_OPEN, OP_VERIFY_SEND, OP_RECV_MSG_KEY, OP_SEAL_OPEN = range(5)


def load(vectors, name):
    return json.loads((vectors / name).read_text())


def slug(text):
    return re.sub(r"[^0-9A-Za-z]+", "-", text).strip("-").lower()


def short(data):
    """One length byte, then the bytes (InputReader::short_text)."""
    data = data.encode() if isinstance(data, str) else data
    if len(data) > 255:
        raise ValueError("short_text field over 255 bytes")
    return bytes([len(data)]) + data


def u32(value):
    return struct.pack(">I", value & 0xFFFFFFFF)


def u64(value):
    return struct.pack(">Q", value & 0xFFFFFFFFFFFFFFFF)


def all_packets(vectors):
    """(name, version, bytes) of every complete packet in the vectors."""
    packets = load(vectors, "packets.json")["vectors"]
    edge = load(vectors, "edge_cases.json")
    for group in (packets, edge["remaining_length_boundaries"], edge["empty_strings"], edge["max_size_strings"]):
        for vector in group:
            yield vector["name"], vector["version"], bytes.fromhex(vector["hex"])
    crypto = load(vectors, "crypto.json")
    yield "crypto CONNECT v4", 4, bytes.fromhex(crypto["handshake"]["connect_v4_hex"])
    yield "crypto CONNACK v4", 4, bytes.fromhex(crypto["handshake"]["connack_v4_hex"])
    yield "crypto SEND v3", 3, bytes.fromhex(crypto["send"]["packet_v3_hex"])
    yield "crypto SEND v4", 4, bytes.fromhex(crypto["send"]["packet_v4_hex"])
    yield "crypto RECV v4", 4, bytes.fromhex(crypto["recv"]["packet_v4_hex"])
    yield "crypto tampered SEND v4", 4, bytes.fromhex(crypto["tampered_send"]["packet_v4_hex"])


def split_seeds(vectors):
    """fuzz_split: [limit selector][n][n chunk sizes - 1][stream]."""
    chunkings = [b"", b"\x00", b"\x01\x04", b"\x02\x00\x0b\x3f"]
    seeds = {}
    for index, (name, _, packet) in enumerate(all_packets(vectors)):
        chunks = chunkings[index % len(chunkings)]
        if len(packet) > 4096:
            chunks = b"\xff"  # 256-byte reads, as a busy connection delivers them
        seeds[name] = bytes([DEFAULT_LIMIT, len(chunks)]) + chunks + packet
    for number, case in enumerate(load(vectors, "edge_cases.json")["decode_cases"]):
        seeds[f"decode case {number}"] = bytes([DEFAULT_LIMIT, 1, 0]) + bytes.fromhex(case["hex"])
    for varint in load(vectors, "edge_cases.json")["remaining_length_varints"]:
        seeds[f"SEND length {varint['value']}"] = bytes([DEFAULT_LIMIT, 0]) + b"\x30" + bytes.fromhex(varint["hex"])
    packets = load(vectors, "packets.json")["vectors"]
    for version in range(1, 5):
        stream = b"".join(bytes.fromhex(v["hex"]) for v in packets if v["version"] == version)
        seeds[f"stream v{version}"] = bytes([DEFAULT_LIMIT, 4, 0, 2, 6, 12]) + stream
        # A limit of 60 bytes (selector 20 * 3): the larger packets are refused.
        seeds[f"stream v{version} small limit"] = bytes([20, 1, 8]) + stream
    return seeds


def decode_seeds(vectors):
    """fuzz_decode: [dialect bit | version - 1][stream]."""
    seeds = {}
    for name, version, packet in all_packets(vectors):
        seeds[name] = bytes([version - 1]) + packet
    for number, case in enumerate(load(vectors, "edge_cases.json")["decode_cases"]):
        seeds[f"decode case {number}"] = bytes([case["version"] - 1]) + bytes.fromhex(case["hex"])
    packets = load(vectors, "packets.json")["vectors"]
    for version in range(1, 5):
        stream = b"".join(bytes.fromhex(v["hex"]) for v in packets if v["version"] == version)
        seeds[f"stream v{version}"] = bytes([version - 1]) + stream
    # WKProto (selector bit 7): the SDK's packets at their version, and all of
    # them as one stream at every version 1-5.
    sdk = load(vectors, "wkproto/sdk.json")["vectors"]
    for vector in sdk:
        seeds[f"wkproto {vector['name']}"] = bytes([WKPROTO | (vector["version"] - 1)]) + bytes.fromhex(vector["hex"])
    stream = b"".join(bytes.fromhex(v["hex"]) for v in sdk)
    for version in range(1, 6):
        seeds[f"wkproto stream v{version}"] = bytes([WKPROTO | (version - 1)]) + stream
    return seeds


def connect_tail(fields, server_now_ms, uid_choice=0, token_choice=0):
    """The fields after the client key; choices 0 take uid and token from the input."""
    return (bytes([fields["device_flag"]]) + u64(fields["client_timestamp"]) + u64(server_now_ms)
            + bytes([uid_choice, token_choice]) + short(fields["device_id"])
            + short(fields["uid"]) + short(fields["token"]))


def connect_seeds(vectors):
    """fuzz_connect: [version][key kind][key fields][device_flag][timestamp][now][choices][strings]."""
    crypto = load(vectors, "crypto.json")
    alice_private = bytes.fromhex(crypto["x25519"]["client_private_hex"])
    now = crypto["handshake"]["server_now_ms"]
    seeds = {}
    connects = [v for v in load(vectors, "packets.json")["vectors"] if v["type"] == "CONNECT"]
    connects += [v for v in load(vectors, "edge_cases.json")["empty_strings"] if v["type"] == "CONNECT"]
    for vector in connects:
        fields = vector["fields"]
        own_key = bytes([KEY_OWN_PAIR]) + alice_private + b"\x00"
        as_given = bytes([KEY_ARBITRARY]) + short(fields.get("client_key", ""))
        seeds[vector["name"]] = bytes([fields["version"]]) + own_key + connect_tail(fields, now)
        seeds[vector["name"] + " key as given"] = bytes([fields["version"]]) + as_given + connect_tail(fields, now)
        # Release mode with alice's stored token: uid choice 1 = alice, token choice 1 = hers.
        seeds[vector["name"] + " stored token"] = (bytes([fields["version"]]) + own_key
                                                   + connect_tail(fields, now, 1, 1))
    fields = connects[-2]["fields"]  # CONNECT v4
    for index in range(LOW_ORDER_POINT_COUNT):
        for top_bit in (0, 0x80):
            key = bytes([KEY_LOW_ORDER, index | top_bit, 0])
            seeds[f"low order point {index} top bit {top_bit >> 7}"] = bytes([4]) + key + connect_tail(fields, now)
    seeds["key of 31 bytes"] = bytes([4, KEY_SHORT, 0]) + bytes(range(31)) + connect_tail(fields, now)
    seeds["key of 33 bytes"] = bytes([4, KEY_OWN_PAIR]) + alice_private + b"\x01\xaa" + connect_tail(fields, now)
    seeds["key with a foreign character"] = bytes([4, KEY_INVALID, 32]) + bytes(range(32)) + b"\x05\x01" + connect_tail(fields, now)
    seeds["key one character short"] = bytes([4, KEY_INVALID, 32]) + bytes(range(32)) + b"\x2b\x00" + connect_tail(fields, now)
    seeds["version 0"] = bytes([0, KEY_OWN_PAIR]) + alice_private + b"\x00" + connect_tail(fields, now)
    seeds["version 255"] = bytes([255, KEY_OWN_PAIR]) + alice_private + b"\x00" + connect_tail(fields, now)
    return seeds


def crypto_seeds(vectors):
    """fuzz_crypto: [operation][key 16][iv 16][operation's fields]."""
    crypto = load(vectors, "crypto.json")
    session = crypto["aes_key_derivation"]["aes_key_ascii"].encode() + crypto["iv"]["salt_ascii"].encode()
    seeds = {}
    for number, sample in enumerate(crypto["payload_encryption"]):
        cipher = bytes.fromhex(sample["ciphertext_hex"])
        plain = bytes.fromhex(sample["plaintext_hex"])
        seeds[f"decrypt {number}"] = bytes([OP_DECRYPT]) + session + cipher
        seeds[f"decrypt {number} bad padding"] = bytes([OP_DECRYPT]) + session + cipher[:-1] + bytes([cipher[-1] ^ 1])
        seeds[f"open {number}"] = bytes([OP_OPEN]) + session + sample["wire_base64"].encode()
        seeds[f"seal {number}"] = bytes([OP_SEAL_OPEN]) + session + plain

    send = crypto["send"]["fields"]
    send_fields = (u32(send["client_seq"]) + bytes([send["channel_type"], send["setting"], 0x02]))
    send_tail = short(send["client_msg_no"]) + short(send["channel_id"]) + bytes.fromhex(send["payload_hex"])
    # Choice 255 takes msg_key from the input: the vector's, which verifies.
    seeds["verify send"] = bytes([OP_VERIFY_SEND]) + session + send_fields + b"\xff" + short(send["msg_key"]) + send_tail
    tampered_tail = short(send["client_msg_no"]) + short("mallory") + bytes.fromhex(send["payload_hex"])
    seeds["verify tampered send"] = (bytes([OP_VERIFY_SEND]) + session + send_fields + b"\xff"
                                     + short(send["msg_key"]) + tampered_tail)
    seeds["verify send signed here"] = bytes([OP_VERIFY_SEND]) + session + send_fields + b"\x00" + short("") + send_tail

    recv = crypto["recv"]["fields"]
    seeds["recv msg key"] = (bytes([OP_RECV_MSG_KEY]) + session + u64(recv["message_id"]) + u32(recv["message_seq"])
                             + u32(recv["timestamp"]) + bytes([recv["channel_type"]]) + short(recv["client_msg_no"])
                             + short(recv["from_uid"]) + short(recv["channel_id"]) + bytes.fromhex(recv["payload_hex"]))
    seeds["open send payload"] = bytes([OP_OPEN]) + session + bytes.fromhex(send["payload_hex"])
    seeds["open invalid base64"] = bytes([OP_OPEN]) + session + base64.b64encode(b"x" * 16)[:-1] + b"!"
    return seeds


def write(corpus_dir, seeds):
    corpus_dir.mkdir(parents=True, exist_ok=True)
    for old in corpus_dir.glob("seed-*"):
        old.unlink()
    for name, data in seeds.items():
        (corpus_dir / f"seed-{slug(name)}").write_bytes(data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=pathlib.Path, default=DEFAULT_VECTORS)
    args = parser.parse_args()
    targets = {
        "fuzz_split": split_seeds,
        "fuzz_decode": decode_seeds,
        "fuzz_connect": connect_seeds,
        "fuzz_crypto": crypto_seeds,
    }
    for target, make in targets.items():
        seeds = make(args.vectors)
        write(HERE / "corpus" / target, seeds)
        print(f"{target}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
