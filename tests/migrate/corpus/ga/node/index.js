// GA realtime over the `ws` package against Azure's GA endpoint.
import WebSocket from "ws";

const url = `wss://${process.env.RESOURCE}.openai.azure.com/openai/v1/realtime?model=gpt-realtime`;
const ws = new WebSocket(url, { headers: { Authorization: `Bearer ${process.env.KEY}` } });

ws.on("open", () => {
  ws.send(JSON.stringify({
    type: "session.update",
    session: {
      type: "realtime",
      output_modalities: ["text"],
      audio: { input: { format: { type: "audio/pcm", rate: 24000 }, turn_detection: null } },
    },
  }));
  ws.send(JSON.stringify({ type: "response.create", response: { output_modalities: ["text"] } }));
});

ws.on("message", (raw) => {
  const event = JSON.parse(raw.toString());
  switch (event.type) {
    case "response.output_text.delta":
      process.stdout.write(event.delta);
      break;
    case "response.content_part.added":
      if (event.part.type === "text") console.log("text part");
      break;
    case "response.output_audio_transcript.done":
      console.log(event.transcript);
      break;
  }
});
