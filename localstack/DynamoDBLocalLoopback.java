// Starts DynamoDB Local listening on loopback only. DynamoDB Local 3.3.1
// has no flag for the listen address (its -help lists -port, not a host)
// and builds a Jetty Server(port), which listens on every interface; this
// launcher sets the host of that server's connector before starting it.
//
// localstack/up.sh runs it with Java's source-file mode, from the jar's
// folder, with the jar on the class path:
//
//   java -Djava.library.path=DynamoDBLocal_lib -cp DynamoDBLocal.jar \
//     localstack/DynamoDBLocalLoopback.java -inMemory -port 8000
//
// The arguments are DynamoDB Local's own. Telemetry is never set up here
// (ServerRunner.main would), so DynamoDB Local sends none whatever the
// arguments: its Telemetry.getTelemetry() stays empty.

import java.lang.reflect.Field;
import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import software.amazon.dynamodb.services.local.main.CommandLineInput;
import software.amazon.dynamodb.services.local.main.ServerRunner;
import software.amazon.dynamodb.services.local.server.DynamoDBProxyServer;

public class DynamoDBLocalLoopback {
    public static void main(String[] args) throws Exception {
        String host = "127.0.0.1";
        // -help and -version print and stop here, as with the jar itself.
        if (!new CommandLineInput(args).init()) {
            return;
        }
        DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
        Field field = DynamoDBProxyServer.class.getDeclaredField("server");
        field.setAccessible(true);
        Server server = (Server) field.get(proxy);
        Connector[] connectors = server.getConnectors();
        if (connectors.length == 0) {
            throw new IllegalStateException("DynamoDB Local built a server without a connector");
        }
        for (Connector connector : connectors) {
            // Only a ServerConnector opens a socket; anything else is unexpected.
            ((ServerConnector) connector).setHost(host);
        }
        String address = host + ":" + ((ServerConnector) connectors[0]).getPort();
        try {
            proxy.start();
        } catch (Exception e) {
            // One line, not a stack trace: up.sh shows the log's last lines.
            System.err.println("DynamoDBLocalLoopback: cannot listen on " + address + ": " + e);
            System.exit(1);
        }
        if (!server.isStarted()) {
            // start() printed its reason ("Could not start server on port").
            System.exit(1);
        }
        System.err.println("DynamoDBLocalLoopback: DynamoDB Local listens on " + address);
    }
}
