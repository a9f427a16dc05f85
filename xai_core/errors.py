"""The one exception type for problems a user can cause and fix."""


class XRayError(Exception):
    """A bad input (image, checkpoint, CSV) described in words a clinician can act on.

    The message is shown on the page as is, so it must never contain patient
    identifiers or raw file content.
    """
