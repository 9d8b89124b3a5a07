"""The Hugging Face Hub: the only module that talks to huggingface_hub's network API.

``download_folder`` fetches a zoo repo's files (or reuses the cache) and ``upload_folder``
sends a zoo folder. Every failure a user can fix (no token, offline, unknown repo, HTTP errors)
becomes a ``HubAccessError`` whose message says what to do. huggingface_hub is imported inside
the functions: it reads ``HF_ENDPOINT``/``HF_HUB_OFFLINE``/``HF_HOME`` when first imported, so
importing nodezoo must not import it early.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .. import __version__
from .errors import HubAccessError, ZooError
from .folder import CONFIG_NAME, FOLDER_FILES, WEIGHTS_NAME

__all__ = ["download_folder", "upload_folder", "upload_token"]

# Files a re-publish removes from the repo when the new folder lacks them (a stale recipe.yaml
# would mis-describe new weights); other files in the repo are left alone.
STALE_PATTERNS = tuple(FOLDER_FILES)


def download_folder(
    repo_id: str,
    revision: str | None = None,
    *,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
) -> Path:
    """Download the zoo files of ``repo_id`` (or use the cache when offline) and return the
    folder. The keyword arguments are ``snapshot_download``'s."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        HFValidationError,
        HTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id!r}" + (f" at revision {revision!r}" if revision else "")
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=list(FOLDER_FILES),
            token=token,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            etag_timeout=5,
            library_name="nodezoo",
            library_version=__version__,
        )
    except HFValidationError as err:
        raise ZooError(
            f"{repo_id!r} is not a folder, a zoo name or a valid Hub repo id ('org/name'): {err}"
        ) from None
    except RepositoryNotFoundError:
        raise HubAccessError(
            f"no model repo {where} on {constants.ENDPOINT} (or it is private: log in with "
            "`hf auth login` or set HF_TOKEN)."
        ) from None
    except RevisionNotFoundError:
        raise HubAccessError(
            f"{repo_id!r} has no revision {revision!r}; give an existing branch, tag or commit, "
            "or no revision for main."
        ) from None
    except LocalEntryNotFoundError:
        cache = cache_dir or constants.HF_HUB_CACHE
        if local_files_only:
            reason = "local_files_only=True and it is not in the local cache"
            fix = "download it once without local_files_only"
        elif constants.HF_HUB_OFFLINE:
            reason = "HF_HUB_OFFLINE is set and it is not in the local cache"
            fix = "download it once while online, or unset HF_HUB_OFFLINE"
        else:
            reason = f"{constants.ENDPOINT} could not be reached and it is not in the local cache"
            fix = "check the network (and HF_ENDPOINT), or download it once while online"
        raise HubAccessError(
            f"cannot load {where}: {reason} ({cache}). To fix: {fix}, or pass a local folder "
            "instead."
        ) from None
    except HTTPError as err:
        raise HubAccessError(
            f"downloading {where} from {constants.ENDPOINT} failed: {err}"
        ) from None
    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file() or not (folder / WEIGHTS_NAME).is_file():
        raise ZooError(
            f"Hub repo {where} has no {CONFIG_NAME} and {WEIGHTS_NAME}: not a nodezoo model."
        )
    return folder


def upload_token(token: str | None = None) -> str:
    """The token to upload with; errors at once when offline or not logged in (huggingface_hub
    would only find out after building the commit, or not at all before the request)."""
    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise HubAccessError(
            "HF_HUB_OFFLINE is set, so nothing can be uploaded; unset it to publish, or build "
            "the folder only with --out DIR."
        )
    token = token or get_token()
    if not token:
        raise HubAccessError(
            "no Hugging Face token: log in with `hf auth login` or set HF_TOKEN (a token with "
            "write access), then publish again."
        )
    return token


def upload_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    branch: str | None = None,
    create_pr: bool = False,
    delete_patterns: Sequence[str] | None = STALE_PATTERNS,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` to it; returns the commit URL.

    ``branch``: commit to that branch (created if missing) instead of main; ``create_pr``: open
    a pull request instead of committing directly; ``delete_patterns``: remote files matching
    them and absent from ``folder`` are deleted in the same commit (default: the zoo files, so a
    re-publish leaves nothing stale; ``None`` deletes nothing). Checks first for what
    huggingface_hub would only discover late (or as a traceback): offline mode and a missing
    token. Any HTTP failure becomes a ``HubAccessError`` with the reason.
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HTTPError

    api = HfApi(token=upload_token(token))
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if branch:
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        info = api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            revision=branch,
            create_pr=create_pr,
            delete_patterns=list(delete_patterns) if delete_patterns else None,
            commit_message=commit_message or f"Publish {Path(folder).name} with nodezoo",
        )
    except HTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        what = f"HTTP {status}" if status else type(err).__name__
        raise HubAccessError(
            f"uploading to {repo_id!r} on {constants.ENDPOINT} failed ({what}): "
            f"{str(err).splitlines()[0] if str(err) else what}. Check the network, the token's "
            "write access and the repo id."
        ) from None
    except ValueError as err:  # huggingface_hub: the Hub rejected the card's metadata
        raise HubAccessError(f"the Hub refused {repo_id!r}: {err}") from None
    url = getattr(info, "pr_url", None) if create_pr else None
    return str(url or getattr(info, "commit_url", info))
