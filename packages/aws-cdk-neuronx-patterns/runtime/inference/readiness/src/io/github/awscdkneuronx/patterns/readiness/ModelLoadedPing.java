package io.github.awscdkneuronx.patterns.readiness;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import org.pytorch.serve.servingsdk.Context;
import org.pytorch.serve.servingsdk.Model;
import org.pytorch.serve.servingsdk.ModelServerEndpoint;
import org.pytorch.serve.servingsdk.Worker;
import org.pytorch.serve.servingsdk.annotations.Endpoint;
import org.pytorch.serve.servingsdk.annotations.helpers.EndpointTypes;
import org.pytorch.serve.servingsdk.http.Request;
import org.pytorch.serve.servingsdk.http.Response;

/**
 * SageMaker's health check, {@code GET /ping}, answered 200 only when the endpoint can answer a request: every model
 * TorchServe has registered has at least one worker that has finished loading it.
 *
 * <p>TorchServe 0.11.0's own {@code /ping} counts a worker that is still loading as healthy (ApiUtils.isModelHealthy
 * and WorkerThread.isHealthy), so SageMaker would send traffic to an instance whose model needs many more minutes to
 * load. TorchServe dispatches a request to a plugin endpoint of the same name before its built-in ones
 * (InferenceRequestHandler.handleRequest), so this class replaces it. The plugin SDK's Worker.isRunning is the worker
 * state WORKER_MODEL_LOADED (servingsdk.impl.ModelWorker).
 *
 * <p>No registered model is not ready either: the built-in answer there is 200.
 *
 * <p>The jar joins the system class path, where TorchServe's ServiceLoader finds this class, as a Java agent
 * ({@code -javaagent} in JDK_JAVA_OPTIONS; the toolkit writes TorchServe's config without a plugins path); the
 * agent's entry is DrainOnTerm.premain.
 */
@Endpoint(
    urlPattern = "ping",
    endpointType = EndpointTypes.INFERENCE,
    description = "200 once every model has a loaded worker, 503 before")
public final class ModelLoadedPing extends ModelServerEndpoint {

  private static final int READY = 200;
  private static final int NOT_READY = 503;

  @Override
  public void doGet(Request request, Response response, Context context) throws IOException {
    Map<String, Model> models = context.getModels();
    boolean ready = !models.isEmpty() && models.values().stream().allMatch(ModelLoadedPing::hasLoadedWorker);
    // The body has the shape of TorchServe's own answer ({"status": ...}).
    String body = "{\"status\": \"" + (ready ? "Healthy" : "Loading") + "\"}\n";
    response.setStatus(ready ? READY : NOT_READY, ready ? "OK" : "Service Unavailable");
    response.setContentType("application/json");
    try (OutputStream out = response.getOutputStream()) {
      out.write(body.getBytes(StandardCharsets.UTF_8));
    }
  }

  private static boolean hasLoadedWorker(Model model) {
    return model.getModelWorkers().stream().anyMatch(Worker::isRunning);
  }
}
