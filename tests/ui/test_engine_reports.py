"""What the engine reports between the lines: prompt-encoding progress and images that could not be made."""

from app.inference.api.errors import FailureKind
from app.inference.api.events import ImageFailed, PromptEncoding
from app.ui.generation.jobs import JobStatus
from tests.ui.conftest import wait_until_ready
from tests.ui.fake_session import EngineBackend, FakeSession


class LongPromptSession(FakeSession):
    """Encodes a long prompt window by window (as the real text encoders report it), then samples."""

    def run(self, model, request, cancel=None, variant=None):
        for done in range(1, 6):
            yield PromptEncoding("prompt", done, 5)
        yield from super().run(model, request, cancel, variant)


class NanSession(FakeSession):
    """Image 1 of the job comes out NaN; the others are made."""

    def run(self, model, request, cancel=None, variant=None):
        for event in super().run(model, request, cancel, variant):
            if getattr(event, "image_index", None) == 1 and type(event).__name__ == "ImageFinished":
                message = (
                    "the model produced NaN at step 3: the weights may be damaged or the precision too low"
                )
                yield ImageFailed(1, event.seed, message, FailureKind.NON_FINITE)
            else:
                yield event


def test_the_status_shows_prompt_encoding_progress(qtbot, make_window):
    from app.metadata.png_info import save_png

    window = make_window(backend_loader=lambda: EngineBackend(LongPromptSession, save_png))
    wait_until_ready(qtbot, window)
    shown = []
    window.controller.prompt_encoding.connect(lambda *_: shown.append(window.progress.label.text()))
    with qtbot.waitSignal(window.token_counter.counted, timeout=60000):  # its thread ends with the test
        window.state.update(prompt="a long prompt", steps=2)
    with qtbot.waitSignal(window.controller.job_ended, timeout=10000):
        window.commands.generate.generate()
    assert shown == [f"Encoding prompt {k}/5…" for k in range(1, 6)]


def test_an_image_that_came_out_nan_fails_the_job_with_its_sentence(qtbot, make_window, tmp_path):
    from app.metadata.png_info import save_png

    window = make_window(backend_loader=lambda: EngineBackend(NanSession, save_png))
    wait_until_ready(qtbot, window)
    finished = []
    window.controller.image_finished.connect(finished.append)
    window.state.update(prompt="x", steps=2, count=3)
    with qtbot.waitSignal(window.controller.job_ended, timeout=10000) as ended:
        window.commands.generate.generate()
    outcome = ended.args[1]
    assert outcome.status is JobStatus.FAILED and outcome.kind is FailureKind.NON_FINITE
    assert [r.image_index for r in finished] == [0, 2] and outcome.images == 2
    assert "Image 2 failed" in window.banner.message() and "NaN at step 3" in window.banner.message()
