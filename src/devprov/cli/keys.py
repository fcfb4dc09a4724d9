"""`devprov keys`: the sealing keys that keep secrets at rest (status, rotate, generate)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from devprov.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonFlag,
    audited,
    console,
    fail,
    instance_of,
    report,
    with_store,
)

if TYPE_CHECKING:
    from devprov.domain.sealing import Sealer
    from devprov.store.database import Store

keys_app = typer.Typer(
    rich_markup_mode=None,
    help="The sealing keys: secrets in the store and the data dir are encrypted under them.",
    no_args_is_help=True,
)


def _sealer(data_dir: Path) -> Sealer:
    from devprov.domain.sealing import SealingError
    from devprov.keyring import load_sealer

    try:
        return load_sealer(data_dir, create=False)
    except SealingError as error:
        raise fail(f"{error} (`devprov serve`, `init` or `db upgrade` makes a key file)") from None


def reseal_files(data_dir: Path, sealer: Sealer) -> int:
    """Seal the data dir's own secrets under the current key: the instance file's policy keys,
    the TLS keys, the issuing CA keys. How many files were rewritten."""
    from devprov.instance import load_instance, save_instance
    from devprov.issuing_cas import reseal_keys
    from devprov.server.tls import CA_KEY, SERVER_KEY, reseal_key

    rewritten = reseal_keys(data_dir, sealer)
    instance = load_instance(data_dir)
    if instance is not None:
        save_instance(data_dir, instance)
        rewritten += 1
    for name in (CA_KEY, SERVER_KEY):
        path = data_dir / "tls" / name
        if path.exists() and reseal_key(path, sealer):
            rewritten += 1
    return rewritten


@keys_app.command("status")
def status(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
    """Where the keys come from, their ids (the sealing one first), and what each seals."""
    from devprov.keyring import KEY_VARIABLE, from_environment, key_file

    instance_of(data_dir)
    sealer = _sealer(data_dir)
    use = with_store(data_dir, lambda store: store.sealed_by_key())
    source = KEY_VARIABLE if from_environment() else str(key_file(data_dir).resolve())
    details = {
        "source": source,
        "current": sealer.current_id,
        "keys": sealer.key_ids,
        "sealed": use,
    }
    if as_json:
        print(json.dumps(details, indent=2))
        return
    console.print(f"keys from {source}: {', '.join(sealer.key_ids)} (sealing: {sealer.current_id})")
    for name, count in sorted(use.items()):
        console.print(f"  {count} secret fields in the store under {name}")


@keys_app.command("rotate")
def rotate(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    drop_old: Annotated[
        bool,
        typer.Option(
            "--drop-old/--keep-old",
            help="Remove the older keys from the key file once everything is re-sealed (keep"
            " them until every running devprov has seen the new key: see RELIABILITY.md).",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """A new key seals from now on: every secret is re-sealed under it, in one transaction.

    With a key file, a new key is made and put first. With DEVPROV_SECRET_KEY, put the new
    key first in the variable yourself (`devprov keys generate` makes one), then run this."""
    from devprov.domain.sealing import new_key
    from devprov.keyring import (
        KEY_VARIABLE,
        RELOOK_SECONDS,
        from_environment,
        key_file,
        load_sealer,
        parse_keys,
        write_key_file,
    )
    from devprov.store.deployment import reseal as reseal_deployment
    from devprov.store.schema import compact

    instance_of(data_dir)
    old = _sealer(data_dir)
    if from_environment():
        if drop_old:
            raise fail(f"the keys come from {KEY_VARIABLE}: remove the old ones from it yourself.")
        sealer = old
    else:
        held = parse_keys(key_file(data_dir).read_text(), str(key_file(data_dir)))
        fresh = new_key()
        write_key_file(data_dir, [fresh, *held])  # every key held while the store re-seals
        sealer = load_sealer(data_dir, create=False)

    async def reseal(store: Store) -> int:
        return await audited(store, "POST", "/keys/rotate", None, store.seal_secrets(again=True))

    database = instance_of(data_dir).database
    records = with_store(data_dir, reseal, sealer)
    records += reseal_deployment(database, sealer)  # the identity every node shares
    files = reseal_files(data_dir, sealer)
    if drop_old and not from_environment():
        # A running devprov looks at the key file at most once a second, as it seals: wait
        # until every one has, then seal again what one sealed under the old key meanwhile.
        time.sleep(2 * RELOOK_SECONDS)
        records += with_store(data_dir, reseal, sealer)
        records += reseal_deployment(database, sealer)
        files += reseal_files(data_dir, sealer)
        write_key_file(data_dir, [fresh])
    compact(database)
    kept = "" if drop_old else f"; older keys kept: {', '.join(sealer.key_ids[1:]) or 'none'}"
    report(
        as_json,
        f"sealing key is now {sealer.current_id}: re-sealed {records} records and {files} files"
        + kept,
        {"current": sealer.current_id, "records": records, "files": files},
    )


@keys_app.command("generate")
def generate(as_json: JsonFlag = False) -> None:
    """Print a new key (base64), e.g. for DEVPROV_SECRET_KEY (the sealing key first, commas
    between keys)."""
    from devprov.domain.sealing import key_id, new_key
    from devprov.keyring import encode_key

    key = new_key()
    if as_json:
        print(json.dumps({"key": encode_key(key), "keyId": key_id(key)}))
        return
    print(encode_key(key))
    typer.echo(f"key id {key_id(key)}", err=True)
