"""Rate control: an image to a target size (:mod:`.image`), a video to a target bitrate (:mod:`.video`)."""
