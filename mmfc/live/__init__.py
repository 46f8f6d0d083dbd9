"""`mmfc live`: a camera, a stream URL or a video file through a trained run as it plays, each
person named with their action as it happens.

source.py (the source, read on its own thread, reconnected when lost) -> session.py (poses
tracked online, each person's sliding window scored as it fills by mmfc.predict.people, JSON
lines, the recording and predict's files; windows dropped rather than falling behind) ->
server.py (the live view: a page with the annotated stream and each person's labels).
"""
